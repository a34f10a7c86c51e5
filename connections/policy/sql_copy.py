"""Reading what a COPY streams from its CopyStmt node: the copy_* facts of StatementFacts.

sql_tree's COPY visitor calls `copy_output` for a COPY that executes now. The
column names follow the server's own naming (FigureColnameInternal) where the
text alone decides them, else None: the caller then cannot tell the columns.
"""

_COPY_OPTION_FIELDS = {"format": "copy_format", "header": "copy_header", "delimiter": "copy_delimiter"}
# Options that change how a row splits into fields, or what NULL looks like.
_SPLITTING_OPTIONS = frozenset(("quote", "escape", "null", "force_quote", "force_not_null", "force_null", "encoding"))


def copy_output(fields: dict) -> dict:
    """The copy_* fields of StatementFacts for a CopyStmt: where its rows go, their columns and format."""
    output: dict = {
        "copy_to_stdout": not fields.get("is_from") and not fields.get("is_program") and "filename" not in fields,
        "copy_format": "text",
    }
    relation = fields.get("relation")
    if relation is not None:
        output["copy_relation"] = (relation.get("schemaname", ""), relation.get("relname", ""))
        if fields.get("attlist"):  # COPY t (a, b): those columns, in that order
            output["copy_columns"] = tuple(item.get("String", {}).get("sval", "") for item in fields["attlist"])
    else:
        output["copy_columns"] = _output_names(fields.get("query", {}))
    # Old (CSV, BINARY, HEADER, DELIMITER AS) and new (WITH (FORMAT csv, ...)) syntax give the same DefElems.
    for option in fields.get("options", ()):
        element = option.get("DefElem", {})
        if element.get("defname", "") in _SPLITTING_OPTIONS:
            output["copy_custom_quoting"] = True
        field = _COPY_OPTION_FIELDS.get(element.get("defname", ""))
        if field is None:
            continue
        value = _option_string(element.get("arg"))
        output[field] = _header_on(value) if field == "copy_header" else value
    return output


def _option_string(argument: dict | None) -> str:
    """An option's value as the server's defGetString reads it ("true" for a bare option)."""
    if argument is None:
        return "true"
    for value_type, value in argument.items():
        if value_type == "String":
            return value.get("sval", "")
        if value_type == "Integer":
            return str(value.get("ival", 0))  # the JSON leaves out a zero
        if value_type == "Float":
            return value.get("fval", "")
        if value_type == "Boolean":
            return "true" if value.get("boolval") else "false"
    return ""  # a list: the server refuses it


def _header_on(value: str) -> bool:
    # defGetBoolean: true/on/1 and false/off/0; the server refuses anything else for
    # COPY TO ("match" included), and no header is the reading that masks every row.
    return value.lower() in ("true", "on", "1")


def _output_names(query: dict) -> tuple[str, ...] | None:
    """The column names of a COPY (query)'s rows when the text alone decides them all, else None."""
    for node_type, fields in query.items():
        if node_type == "SelectStmt":
            while fields.get("op", "SETOP_NONE") != "SETOP_NONE":  # UNION etc.: the first branch names them
                fields = fields.get("larg", {})
            if "valuesLists" in fields:
                return None
            targets = fields.get("targetList", ())
        else:  # INSERT, UPDATE, DELETE, MERGE ... RETURNING
            targets = fields.get("returningClause", {}).get("exprs") or fields.get("returningList", ())
        names = tuple(_target_name(target.get("ResTarget", {})) for target in targets)
        return None if None in names else names  # type: ignore[return-value]
    return None


def _target_name(target: dict) -> str | None:
    """A target's alias, or the name the server would figure for it; None for "?column?" or unknown."""
    if target.get("name"):
        return target["name"]
    name, strength = _figured_name(target.get("val", {}))
    return name if strength > 0 else None


def _figured_name(node: dict) -> tuple[str | None, int]:
    """(name, strength) as the server's FigureColnameInternal (parse_target.c) gives them.

    Strength 2 is a good name, 1 a fallback (a cast's type name), 0 none
    ("?column?"), -1 a node this function does not model.
    """
    for node_type, fields in node.items():
        if node_type in ("ColumnRef", "A_Indirection"):
            parts = fields.get("fields" if node_type == "ColumnRef" else "indirection", ())
            if parts and "A_Star" in parts[-1]:
                return None, -1  # t.* and (x).* expand to several columns
            names = [part["String"].get("sval", "") for part in parts if "String" in part]
            if names:
                return names[-1], 2
            return _figured_name(fields.get("arg", {})) if node_type == "A_Indirection" else (None, 0)
        if node_type == "FuncCall":
            if fields.get("funcformat", "COERCE_EXPLICIT_CALL") != "COERCE_EXPLICIT_CALL":
                # SQL syntax (EXTRACT, TRIM, ...): the function the grammar picks, hence the
                # name, differs between server versions (EXTRACT was date_part before 14).
                return None, -1
            return _last_name(fields.get("funcname", ())), 2
        if node_type == "TypeCast":
            name, strength = _figured_name(fields.get("arg", {}))
            if 0 <= strength <= 1:
                return _last_name(fields.get("typeName", {}).get("names", ())), 1
            return name, strength
        if node_type == "CollateClause":
            return _figured_name(fields.get("arg", {}))
        if node_type == "A_Const":
            return None, 0
    return None, -1


def _last_name(items: list) -> str | None:
    return items[-1].get("String", {}).get("sval") if items else None

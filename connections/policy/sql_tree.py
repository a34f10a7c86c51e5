"""Reading libpg_query's JSON parse tree of a query string into StatementFacts, one per statement.

sql_facts parses the query text (`pglast.parser.parse_sql_json`) and caches
the results; this module only walks the tree. A `_Collector` visits every
node once, dispatching on node type to a visitor (`_VISITORS`) for the node
types that carry a fact: a relation, a called function, a statement kind,
COPY to a file or program, what a COPY streams (sql_copy). Each visit knows whether the node executes now
(not under a view's query, plain EXPLAIN, a rule or a function body).
A statement type the table does not know is UNKNOWN and opaque: fail closed.
"""

from dataclasses import dataclass, replace

from connections.policy.sql_copy import copy_output

# Bare statement kinds. A statement's kinds hold the bare kind and, where an
# object type applies, the qualified one ("DROP" and "DROP TABLE").
KINDS = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "COPY",
    "CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "SET", "RESET", "SHOW",
    "EXPLAIN", "PREPARE", "EXECUTE", "DEALLOCATE", "BEGIN", "COMMIT", "ROLLBACK",
    "SAVEPOINT", "RELEASE", "PREPARE TRANSACTION", "DO", "CALL", "VACUUM", "ANALYZE",
    "LOCK", "LISTEN", "NOTIFY", "UNLISTEN", "COMMENT", "SECURITY LABEL", "REINDEX",
    "CLUSTER", "REFRESH", "DISCARD", "DECLARE", "FETCH", "MOVE", "CLOSE",
    "CHECKPOINT", "LOAD", "IMPORT", "REASSIGN",
    "UNKNOWN",  # a statement type this module does not know: treated as opaque
)  # fmt: skip


@dataclass(frozen=True)
class StatementFacts:
    """What one statement does, as the policy engine matches it.

    Names are lower case. `tables` holds "name" and, when a schema is
    written, "schema.name"; `relations` holds (schema or "", name) pairs of
    the same relations. `kinds`, `without_where`, `copy_*` and
    `execute_name` count only what executes now (not a view's query, not
    plain EXPLAIN's); `tables` and `functions` count every reference.
    Prepared-statement names are kept as the server keys them (a quoted
    name keeps its case).

    The `copy_*` fields below describe a COPY in either direction; names in
    them are as the server resolves them (unquoted folded, quoted kept).
    `copy_columns` is None unless the text alone names every column (for
    `COPY t TO STDOUT` the catalog does). `copy_format` is "text", "csv" or
    "binary" (another value the server refuses), "" when not a COPY.
    """

    kind: str  # the statement's own, most specific kind: "DROP TABLE", "SELECT"
    kinds: frozenset[str]
    schemas: frozenset[str]
    tables: frozenset[str]
    relations: frozenset[tuple[str, str]]
    functions: frozenset[str]
    copy_program: bool = False
    copy_file: bool = False
    without_where: bool = False
    opaque: bool = False
    prepare_name: str | None = None
    prepared: "StatementFacts | None" = None
    execute_name: str | None = None
    deallocate_name: str | None = None  # "" for DEALLOCATE ALL
    text: str = ""
    copy_to_stdout: bool = False  # COPY ... TO STDOUT: rows stream to the client as CopyData
    copy_relation: tuple[str, str] | None = None  # (schema or "", table) of COPY table
    copy_columns: tuple[str, ...] | None = None
    copy_format: str = ""
    copy_header: bool = False
    copy_delimiter: str | None = None  # None: the format's default
    copy_custom_quoting: bool = False  # QUOTE, ESCAPE, NULL, FORCE_* or ENCODING: rows split unlike the defaults


def bare_kind(kind: str) -> str:
    """ "DROP" for "DROP TABLE": the longest entry of KINDS that `kind` starts with (or `kind` itself)."""
    best = ""
    for bare in KINDS:
        if (kind == bare or kind.startswith(bare + " ")) and len(bare) > len(best):
            best = bare
    return best or kind


def read_tree(sql: str, tree: dict) -> tuple[tuple[StatementFacts, ...], tuple[str, ...], int, int, bool]:
    """(facts, texts, head, tail, literal_bound) of a parsed query string and its JSON tree (`stmts`).

    head and tail count the characters around the only statement (-1 for several); literal_bound
    says a fact depends on a literal's value, so the result must not be cached by a literal-free key.
    """
    raw_statements = tree.get("stmts", ())
    data = sql if sql.isascii() else sql.encode()  # libpg_query locations count bytes
    facts, texts, literal_bound = [], [], False
    head = tail = -1
    for raw in raw_statements:
        start = raw.get("stmt_location", 0)
        end = start + raw["stmt_len"] if raw.get("stmt_len") else len(data)
        text = _decode(data[start:end]).strip()
        collector = _Collector()
        ((node_type, fields),) = raw["stmt"].items()
        collector.visit(node_type, fields, True)
        facts.append(collector.facts(text))
        texts.append(text)
        literal_bound = literal_bound or collector.literal_bound
    if len(facts) == 1:
        head, tail = len(_decode(data[:start])), len(_decode(data[end:]))
    return tuple(facts), tuple(texts), head, tail, literal_bound


def _decode(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode()


# --- reading the tree -----------------------------------------------------------


def _typed_fields() -> dict[str, dict[str, str]]:
    """{node type: {field: node type}} for fields libpg_query writes without a type wrapper.

    A Node* field is written {"RangeVar": {...}}; a RangeVar* field just {...}.
    pglast's AST classes record each field's C type, so the map is exact.
    """
    from pglast import ast

    node_types = {name for name in dir(ast) if isinstance(getattr(ast, name), type)}
    # Only concrete structs are written bare: an abstract pointer (Node*, Expr*) is wrapped like any Node*.
    concrete = {name for name in node_types if isinstance(getattr(getattr(ast, name), "__slots__", None), dict)}
    typed: dict[str, dict[str, str]] = {}
    for name in concrete:
        for field, info in getattr(ast, name).__slots__.items():
            base = info.c_type.rstrip("*")
            if base in concrete and base not in ("List", "ValUnion"):
                typed.setdefault(name, {})[field] = base
    return typed


_TYPED_FIELDS = _typed_fields()
_NO_FIELDS: dict[str, str] = {}
_RELATION_OBJECTS = frozenset(
    ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_INDEX", "OBJECT_SEQUENCE", "OBJECT_FOREIGN_TABLE")
)
_OBJECT_NAMES = {
    "MATVIEW": "MATERIALIZED VIEW", "FDW": "FOREIGN DATA WRAPPER", "FOREIGN_SERVER": "SERVER",
    "OPCLASS": "OPERATOR CLASS", "OPFAMILY": "OPERATOR FAMILY", "AMOP": "OPERATOR FAMILY",
    "AMPROC": "OPERATOR FAMILY", "TSCONFIGURATION": "TEXT SEARCH CONFIGURATION",
    "TSDICTIONARY": "TEXT SEARCH DICTIONARY", "TSPARSER": "TEXT SEARCH PARSER", "TSTEMPLATE": "TEXT SEARCH TEMPLATE",
    "LARGEOBJECT": "LARGE OBJECT", "STATISTIC_EXT": "STATISTICS", "TABCONSTRAINT": "CONSTRAINT",
    "DOMCONSTRAINT": "CONSTRAINT", "DEFACL": "DEFAULT PRIVILEGES", "PARAMETER_ACL": "PARAMETER",
    "PUBLICATION_NAMESPACE": "PUBLICATION", "PUBLICATION_REL": "PUBLICATION",
}  # fmt: skip


def _object_kind(bare: str, objtype: str | None) -> tuple[str, ...]:
    """("DROP", "DROP TABLE") from "DROP" and "OBJECT_TABLE"."""
    if not objtype:
        return (bare,)
    name = objtype.removeprefix("OBJECT_")
    return bare, f"{bare} {_OBJECT_NAMES.get(name, name.replace('_', ' '))}"


def _strings(items: list) -> list[str]:
    """The values of a list of {"String": {"sval": ...}} nodes, lower case."""
    return [item["String"].get("sval", "").lower() for item in items if "String" in item]


def _name_parts(node: dict) -> list[str]:
    """The dotted name parts of an object in DROP/COMMENT/ALTER ... OWNER lists."""
    if "List" in node:
        return _strings(node["List"].get("items", ()))
    if "String" in node:
        return _strings([node])
    if "ObjectWithArgs" in node:
        return _strings(node["ObjectWithArgs"].get("objname", ()))
    if "TypeName" in node:
        return _strings(node["TypeName"].get("names", ()))
    return []


class _Collector:
    """Walks one statement's JSON tree and gathers its facts."""

    def __init__(self) -> None:
        self.kind: str | None = None
        self.kinds: set[str] = set()
        self.schemas: set[str] = set()
        self.tables: set[str] = set()
        self.relations: set[tuple[str, str]] = set()
        self.functions: set[str] = set()
        self.copy_program = self.copy_file = self.without_where = self.opaque = False
        self.prepare_name: str | None = None
        self.prepared: StatementFacts | None = None
        self.execute_name: str | None = None
        self.deallocate_name: str | None = None
        self.copy_output: dict = _NO_COPY  # StatementFacts' copy_* fields of a COPY
        self.literal_bound = False  # a fact depends on a literal's value

    def facts(self, text: str) -> StatementFacts:
        """The gathered facts as a StatementFacts carrying `text`."""
        prepared = self.prepared and replace(self.prepared, text=text)
        return StatementFacts(
            kind=self.kind or "UNKNOWN",
            kinds=frozenset(self.kinds),
            schemas=frozenset(self.schemas),
            tables=frozenset(self.tables),
            relations=frozenset(self.relations),
            functions=frozenset(self.functions),
            copy_program=self.copy_program,
            copy_file=self.copy_file,
            without_where=self.without_where,
            opaque=self.opaque,
            prepare_name=self.prepare_name,
            prepared=prepared,
            execute_name=self.execute_name,
            deallocate_name=self.deallocate_name,
            text=text,
            **self.copy_output,
        )

    def visit(self, node_type: str, fields: dict, executes: bool) -> None:
        """Visit one node; `executes` is False under a view's query, plain EXPLAIN, a rule, a body."""
        visitor = _VISITORS.get(node_type)
        if visitor is not None:
            visitor(self, node_type, fields, executes)
        elif node_type.endswith("Stmt") and node_type not in _PLAIN_STATEMENT_PARTS:
            _visit_unknown(self, node_type, fields, executes)
        else:
            self.children(node_type, fields, executes)

    def children(self, node_type: str, fields: dict, executes: bool) -> None:
        """Visit every node below `fields` (a node of type `node_type`)."""
        typed = _TYPED_FIELDS.get(node_type, _NO_FIELDS)
        for field, value in fields.items():
            if value.__class__ is dict:
                sub_type = typed.get(field)
                if sub_type is not None:
                    self.visit(sub_type, value, executes)
                else:
                    for wrapped_type, wrapped_fields in value.items():
                        if wrapped_type not in _LEAVES:
                            self.visit(wrapped_type, wrapped_fields, executes)
            elif value.__class__ is list:
                for item in value:
                    if item.__class__ is dict:
                        for wrapped_type, wrapped_fields in item.items():
                            if wrapped_type not in _LEAVES:  # skipped here, not visited: a third faster
                                self.visit(wrapped_type, wrapped_fields, executes)

    def add_kinds(self, executes: bool, kinds: tuple[str, ...]) -> None:
        """Record statement kinds, if the statement runs now."""
        if executes:
            self.kinds.update(kinds)
            if self.kind is None:
                self.kind = kinds[-1]

    def add_relation(self, parts: list[str]) -> None:
        """Record a relation from its name parts ([catalog, [schema,]] name)."""
        if not parts:
            return
        name = parts[-1]
        self.tables.add(name)
        schema = parts[-2] if len(parts) >= 2 else ""
        self.relations.add((schema, name))
        if schema:
            self.tables.add(f"{schema}.{name}")
            self.schemas.add(schema)

    def add_function(self, parts: list[str]) -> None:
        """Record a called function from its name parts."""
        if parts:
            self.functions.add(parts[-1])
            if len(parts) >= 2:
                self.functions.add(f"{parts[-2]}.{parts[-1]}")

    def add_object(self, objtype: str | None, node: dict) -> None:
        """Record the schema or relation named by a DDL object of type `objtype`."""
        parts = _name_parts(node)
        if objtype in _RELATION_OBJECTS:
            self.add_relation(parts)
        elif objtype == "OBJECT_SCHEMA":
            self.schemas.update(parts[-1:])
        elif len(parts) >= 2:
            self.schemas.add(parts[-2])


# --- visitors: one per node type that carries a fact ------------------------------


def _visit_nothing(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    """Leaves (constants, column references): nothing below them matters."""


def _visit_range_var(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    parts = [fields.get(key, "").lower() for key in ("catalogname", "schemaname", "relname") if fields.get(key)]
    collector.add_relation(parts)
    collector.children("RangeVar", fields, executes)


def _visit_func_call(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_function(_strings(fields.get("funcname", ())))
    collector.children("FuncCall", fields, executes)


def _visit_unknown(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    # A statement type newer than this module: nobody has said what it does.
    collector.add_kinds(executes, ("UNKNOWN",))
    collector.opaque = collector.opaque or executes
    collector.children("", fields, executes)


def _fixed(*kinds: str):
    """A visitor for a statement whose kinds do not depend on its fields."""

    def visit(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
        collector.add_kinds(executes, kinds)
        collector.children(node_type, fields, executes)

    return visit


def _by_object(bare: str, field: str):
    """A visitor for a statement whose qualified kind comes from an ObjectType field."""

    def visit(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
        objtype = fields.get(field)
        collector.add_kinds(executes, _object_kind(bare, objtype))
        if isinstance(fields.get("object"), dict):
            collector.add_object(objtype, fields["object"])
        collector.children(node_type, fields, executes)

    return visit


def _visit_select(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("SELECT",))
    if "intoClause" in fields:  # SELECT INTO creates and fills a table
        collector.add_kinds(executes, ("CREATE", "CREATE TABLE"))
    collector.children("SelectStmt", fields, executes)


def _visit_insert(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("INSERT",))
    if fields.get("onConflictClause", {}).get("action") == "ONCONFLICT_UPDATE":
        collector.add_kinds(executes, ("UPDATE",))  # an upsert updates rows
    collector.children("InsertStmt", fields, executes)


def _modifier(kind: str):
    def visit(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
        collector.add_kinds(executes, (kind,))
        if executes and "whereClause" not in fields:  # WHERE CURRENT OF is a whereClause too
            collector.without_where = True
        collector.children(node_type, fields, executes)

    return visit


def _visit_merge(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("MERGE",))
    for clause in fields.get("mergeWhenClauses", ()):
        command = clause.get("MergeWhenClause", {}).get("commandType", "")
        if command in ("CMD_UPDATE", "CMD_DELETE", "CMD_INSERT"):
            collector.add_kinds(executes, (command.removeprefix("CMD_"),))
    collector.children("MergeStmt", fields, executes)


def _visit_copy(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("COPY", "COPY FROM" if fields.get("is_from") else "COPY TO"))
    if executes and fields.get("is_program"):
        collector.copy_program = True
    elif executes and fields.get("filename") is not None:
        collector.copy_file = True
    if executes:
        collector.copy_output = copy_output(fields)
    # A COPY's facts hang on literals: the JSON drops an empty file name (TO '' reads as
    # TO STDOUT, TO '/tmp/x' is a file: one shape key), and DELIMITER ';', HEADER 0,
    # FORMAT 'csv' are literals. COPY is not a hot statement: exact-text caching will do.
    collector.literal_bound = True
    collector.children("CopyStmt", fields, executes)


_NO_COPY: dict = {}


def _explain_analyzes(collector: _Collector, options: list) -> bool:
    """Whether EXPLAIN options ask for ANALYZE (which runs the statement)."""
    analyze = False
    for option in options:
        element = option.get("DefElem", {})
        if element.get("defname") != "analyze":
            continue
        argument = element.get("arg")
        if argument is None:
            analyze = True
            continue
        collector.literal_bound = True  # (ANALYZE 0) and (ANALYZE 1) differ only by a literal
        ((value_type, value),) = argument.items()
        off = (
            (value_type == "Integer" and not value.get("ival"))
            or (value_type == "Boolean" and not value.get("boolval"))
            or (value_type == "String" and value.get("sval", "").lower() in ("false", "off"))
        )
        analyze = analyze or not off  # anything else runs it, or the server rejects it
    return analyze


def _visit_explain(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    analyze = _explain_analyzes(collector, fields.get("options", ()))
    collector.add_kinds(executes, ("EXPLAIN", "EXPLAIN ANALYZE") if analyze else ("EXPLAIN",))
    for wrapped_type, wrapped_fields in fields.get("query", {}).items():
        collector.visit(wrapped_type, wrapped_fields, executes and analyze)


def _visit_prepare(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("PREPARE",))
    collector.prepare_name = fields.get("name", "")
    body = _Collector()
    for wrapped_type, wrapped_fields in fields.get("query", {}).items():
        body.visit(wrapped_type, wrapped_fields, True)
    collector.prepared = body.facts("")
    collector.literal_bound = collector.literal_bound or body.literal_bound


def _visit_execute(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("EXECUTE",))
    if executes:
        collector.execute_name = fields.get("name", "")
    collector.children("ExecuteStmt", fields, executes)


def _visit_deallocate(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("DEALLOCATE",))
    collector.deallocate_name = "" if fields.get("isall") else fields.get("name", "")


def _visit_opaque(kinds_of):
    """DO and CREATE FUNCTION: code in a body this module cannot look into."""

    def visit(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
        collector.add_kinds(executes, kinds_of(fields))
        collector.opaque = collector.opaque or executes
        if "funcname" in fields:
            collector.add_object("OBJECT_FUNCTION", {"List": {"items": fields["funcname"]}})
        collector.children(node_type, fields, False)

    return visit


def _not_run(kinds: tuple[str, ...]):
    """CREATE VIEW and CREATE RULE: their queries are stored, not run now."""

    def visit(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
        collector.add_kinds(executes, kinds)
        collector.children(node_type, fields, False)

    return visit


def _visit_create_table_as(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, _object_kind("CREATE", fields.get("objtype")))
    collector.children("CreateTableAsStmt", fields, executes)


def _visit_create_schema(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("CREATE", "CREATE SCHEMA"))
    if fields.get("schemaname"):
        collector.schemas.add(fields["schemaname"].lower())
    collector.children("CreateSchemaStmt", fields, executes)


def _visit_create_foreign_table(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("CREATE", "CREATE FOREIGN TABLE"))
    collector.children("CreateStmt", fields.get("base", {}), executes)


def _visit_trigger(kinds: tuple[str, ...]):
    def visit(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
        collector.add_kinds(executes, kinds)
        collector.add_function(_strings(fields.get("funcname", ())))  # runs on every event
        collector.children(node_type, fields, executes)

    return visit


def _visit_drop(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    objtype = fields.get("removeType")
    collector.add_kinds(executes, _object_kind("DROP", objtype))
    for item in fields.get("objects", ()):
        collector.add_object(objtype, item)


def _visit_rename(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    objtype = fields.get("renameType")
    if objtype in ("OBJECT_COLUMN", "OBJECT_TABCONSTRAINT", "OBJECT_ATTRIBUTE"):
        objtype = fields.get("relationType")
    collector.add_kinds(executes, _object_kind("ALTER", objtype))
    if objtype == "OBJECT_SCHEMA":
        collector.schemas.update(name.lower() for name in (fields.get("subname"), fields.get("newname")) if name)
    elif objtype in _RELATION_OBJECTS and fields.get("newname") and fields.get("renameType") == objtype:
        collector.add_relation([fields["newname"].lower()])
    if isinstance(fields.get("object"), dict):
        collector.add_object(objtype, fields["object"])
    collector.children("RenameStmt", fields, executes)


def _visit_set_schema(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    objtype = fields.get("objectType")
    collector.add_kinds(executes, _object_kind("ALTER", objtype))
    if fields.get("newschema"):
        collector.schemas.add(fields["newschema"].lower())
    if isinstance(fields.get("object"), dict):
        collector.add_object(objtype, fields["object"])
    collector.children("AlterObjectSchemaStmt", fields, executes)


def _visit_comment(bare: str):
    def visit(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
        collector.add_kinds(executes, (bare,))
        if isinstance(fields.get("object"), dict):
            collector.add_object(fields.get("objtype"), fields["object"])

    return visit


def _visit_grant(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("GRANT",) if fields.get("is_grant") else ("REVOKE",))
    if fields.get("objtype") == "OBJECT_SCHEMA" or fields.get("targtype") == "ACL_TARGET_ALL_IN_SCHEMA":
        collector.schemas.update(_strings(fields.get("objects", ())))
    collector.children("GrantStmt", fields, executes)


def _visit_grant_role(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    bare = "GRANT" if fields.get("is_grant") else "REVOKE"
    collector.add_kinds(executes, (bare, f"{bare} ROLE"))


_TRANSACTION_KINDS = {
    "TRANS_STMT_BEGIN": ("BEGIN",),
    "TRANS_STMT_START": ("BEGIN",),
    "TRANS_STMT_COMMIT": ("COMMIT",),
    "TRANS_STMT_ROLLBACK": ("ROLLBACK",),
    "TRANS_STMT_SAVEPOINT": ("SAVEPOINT",),
    "TRANS_STMT_RELEASE": ("RELEASE",),
    "TRANS_STMT_ROLLBACK_TO": ("ROLLBACK", "ROLLBACK TO SAVEPOINT"),
    "TRANS_STMT_PREPARE": ("PREPARE TRANSACTION",),
    "TRANS_STMT_COMMIT_PREPARED": ("COMMIT", "COMMIT PREPARED"),
    "TRANS_STMT_ROLLBACK_PREPARED": ("ROLLBACK", "ROLLBACK PREPARED"),
}


def _visit_transaction(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, _TRANSACTION_KINDS.get(fields.get("kind", ""), ("UNKNOWN",)))


_SETTING_NAMES = {"session_authorization": "SESSION AUTHORIZATION"}


def _visit_set(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    kind = fields.get("kind", "")
    bare = "RESET" if kind.startswith("VAR_RESET") else "SET"
    name = "ALL" if kind == "VAR_RESET_ALL" else fields.get("name", "")
    name = _SETTING_NAMES.get(name.lower(), name.upper())
    collector.add_kinds(executes, (bare, f"{bare} {name}") if name else (bare,))


def _visit_vacuum(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("VACUUM",) if fields.get("is_vacuumcmd") else ("ANALYZE",))
    collector.children("VacuumStmt", fields, executes)


def _visit_reindex(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    target = fields.get("kind", "").removeprefix("REINDEX_OBJECT_")
    collector.add_kinds(executes, ("REINDEX", f"REINDEX {target}") if target else ("REINDEX",))
    if target == "SCHEMA" and fields.get("name"):
        collector.schemas.add(fields["name"].lower())
    collector.children("ReindexStmt", fields, executes)


def _visit_by_field(bare: str, field: str, names: dict[str, str]):
    """A visitor whose qualified kind is `names[fields[field]]`."""

    def visit(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
        qualifier = names.get(fields.get(field, ""))
        collector.add_kinds(executes, (bare, f"{bare} {qualifier}") if qualifier else (bare,))
        collector.children(node_type, fields, executes)

    return visit


def _visit_fetch(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("MOVE",) if fields.get("ismove") else ("FETCH",))


def _visit_alter_system(collector: _Collector, node_type: str, fields: dict, executes: bool) -> None:
    collector.add_kinds(executes, ("ALTER", "ALTER SYSTEM"))  # its SET is a file edit, not a SET


def _function_kinds(fields: dict) -> tuple[str, ...]:
    return ("CREATE", "CREATE PROCEDURE") if fields.get("is_procedure") else ("CREATE", "CREATE FUNCTION")


# Statements whose kinds do not depend on their fields: node type -> most specific kind.
_FIXED_KINDS = {
    "TruncateStmt": "TRUNCATE", "CallStmt": "CALL", "VariableShowStmt": "SHOW",
    "ConstraintsSetStmt": "SET CONSTRAINTS", "DeclareCursorStmt": "DECLARE", "ClosePortalStmt": "CLOSE",
    "LockStmt": "LOCK", "ListenStmt": "LISTEN", "NotifyStmt": "NOTIFY", "UnlistenStmt": "UNLISTEN",
    "ClusterStmt": "CLUSTER", "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW", "CheckPointStmt": "CHECKPOINT",
    "LoadStmt": "LOAD", "ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA", "ReassignOwnedStmt": "REASSIGN OWNED",
    "CreateStmt": "CREATE TABLE", "IndexStmt": "CREATE INDEX", "CreateSeqStmt": "CREATE SEQUENCE",
    "CreateRoleStmt": "CREATE ROLE", "CreatedbStmt": "CREATE DATABASE", "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "CreateExtensionStmt": "CREATE EXTENSION", "CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER",
    "CreateForeignServerStmt": "CREATE SERVER", "CreateUserMappingStmt": "CREATE USER MAPPING",
    "CreatePolicyStmt": "CREATE POLICY", "CreateAmStmt": "CREATE ACCESS METHOD", "CreatePLangStmt": "CREATE LANGUAGE",
    "CreateCastStmt": "CREATE CAST", "CreateConversionStmt": "CREATE CONVERSION", "CreateDomainStmt": "CREATE DOMAIN",
    "CreateEnumStmt": "CREATE TYPE", "CreateRangeStmt": "CREATE TYPE", "CompositeTypeStmt": "CREATE TYPE",
    "CreateOpClassStmt": "CREATE OPERATOR CLASS", "CreateOpFamilyStmt": "CREATE OPERATOR FAMILY",
    "CreatePublicationStmt": "CREATE PUBLICATION", "CreateSubscriptionStmt": "CREATE SUBSCRIPTION",
    "CreateStatsStmt": "CREATE STATISTICS", "CreateTransformStmt": "CREATE TRANSFORM",
    "AlterDomainStmt": "ALTER DOMAIN", "AlterEnumStmt": "ALTER TYPE", "AlterTypeStmt": "ALTER TYPE",
    "AlterRoleStmt": "ALTER ROLE", "AlterRoleSetStmt": "ALTER ROLE", "AlterDatabaseStmt": "ALTER DATABASE",
    "AlterDatabaseSetStmt": "ALTER DATABASE", "AlterDatabaseRefreshCollStmt": "ALTER DATABASE",
    "AlterSeqStmt": "ALTER SEQUENCE", "AlterExtensionStmt": "ALTER EXTENSION",
    "AlterExtensionContentsStmt": "ALTER EXTENSION", "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER",
    "AlterForeignServerStmt": "ALTER SERVER", "AlterUserMappingStmt": "ALTER USER MAPPING",
    "AlterPolicyStmt": "ALTER POLICY", "AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES",
    "AlterTableSpaceOptionsStmt": "ALTER TABLESPACE", "AlterCollationStmt": "ALTER COLLATION",
    "AlterEventTrigStmt": "ALTER EVENT TRIGGER", "AlterOpFamilyStmt": "ALTER OPERATOR FAMILY",
    "AlterOperatorStmt": "ALTER OPERATOR", "AlterPublicationStmt": "ALTER PUBLICATION",
    "AlterSubscriptionStmt": "ALTER SUBSCRIPTION", "AlterStatsStmt": "ALTER STATISTICS",
    "AlterTSConfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION",
    "AlterTSDictionaryStmt": "ALTER TEXT SEARCH DICTIONARY", "DropRoleStmt": "DROP ROLE",
    "DropdbStmt": "DROP DATABASE", "DropTableSpaceStmt": "DROP TABLESPACE", "DropOwnedStmt": "DROP OWNED",
    "DropUserMappingStmt": "DROP USER MAPPING", "DropSubscriptionStmt": "DROP SUBSCRIPTION",
}  # fmt: skip

_OBJECT_KINDS = {
    "AlterTableStmt": ("ALTER", "objtype"),
    "AlterTableMoveAllStmt": ("ALTER", "objtype"),
    "AlterOwnerStmt": ("ALTER", "objectType"),
    "AlterObjectDependsStmt": ("ALTER", "objectType"),
    "AlterFunctionStmt": ("ALTER", "objtype"),
    "DefineStmt": ("CREATE", "kind"),
}

# Node types named *Stmt that are parts of other statements, not statements.
_PLAIN_STATEMENT_PARTS = frozenset(("RawStmt", "ReturnStmt", "PLAssignStmt", "ReplicaIdentityStmt", "SetOperationStmt"))


# Nodes with nothing below them that matters: constants, column references, type names.
_LEAVES = frozenset(("A_Const", "ColumnRef", "String", "TypeName", "ParamRef", "A_Star", "Integer", "Float", "Boolean"))


def _build_visitors() -> dict:
    visitors = {
        **dict.fromkeys(_LEAVES, _visit_nothing),  # leaves reached through typed fields
        "RangeVar": _visit_range_var,
        "FuncCall": _visit_func_call,
        "SelectStmt": _visit_select,
        "InsertStmt": _visit_insert,
        "UpdateStmt": _modifier("UPDATE"),
        "DeleteStmt": _modifier("DELETE"),
        "MergeStmt": _visit_merge,
        "CopyStmt": _visit_copy,
        "ExplainStmt": _visit_explain,
        "PrepareStmt": _visit_prepare,
        "ExecuteStmt": _visit_execute,
        "DeallocateStmt": _visit_deallocate,
        "DoStmt": _visit_opaque(lambda fields: ("DO",)),
        "CreateFunctionStmt": _visit_opaque(_function_kinds),
        "ViewStmt": _not_run(("CREATE", "CREATE VIEW")),
        "RuleStmt": _not_run(("CREATE", "CREATE RULE")),
        "CreateTableAsStmt": _visit_create_table_as,
        "CreateSchemaStmt": _visit_create_schema,
        "CreateForeignTableStmt": _visit_create_foreign_table,
        "CreateTrigStmt": _visit_trigger(("CREATE", "CREATE TRIGGER")),
        "CreateEventTrigStmt": _visit_trigger(("CREATE", "CREATE EVENT TRIGGER")),
        "DropStmt": _visit_drop,
        "RenameStmt": _visit_rename,
        "AlterObjectSchemaStmt": _visit_set_schema,
        "CommentStmt": _visit_comment("COMMENT"),
        "SecLabelStmt": _visit_comment("SECURITY LABEL"),
        "GrantStmt": _visit_grant,
        "GrantRoleStmt": _visit_grant_role,
        "TransactionStmt": _visit_transaction,
        "VariableSetStmt": _visit_set,
        "VacuumStmt": _visit_vacuum,
        "ReindexStmt": _visit_reindex,
        "DiscardStmt": _visit_by_field("DISCARD", "target", _DISCARD_TARGETS),
        "FetchStmt": _visit_fetch,
        "AlterSystemStmt": _visit_alter_system,
    }
    for node_type, kind in _FIXED_KINDS.items():
        bare = bare_kind(kind)
        visitors[node_type] = _fixed(*((bare, kind) if kind != bare else (kind,)))
    for node_type, (bare, field) in _OBJECT_KINDS.items():
        visitors[node_type] = _by_object(bare, field)
    return visitors


_DISCARD_TARGETS = {
    "DISCARD_ALL": "ALL",
    "DISCARD_PLANS": "PLANS",
    "DISCARD_SEQUENCES": "SEQUENCES",
    "DISCARD_TEMP": "TEMP",
}
_VISITORS = _build_visitors()

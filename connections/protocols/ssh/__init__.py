"""The SSH engine: asyncssh server for agents, asyncssh client to the upstream host, and the relay between."""

"""An SLS-compatible endpoint whose Logstores are encrypted at rest (``sls-envelope serve``).

wire.py: LogGroup protobuf and compression; store.py: shard files of sealed batches;
auth.py: the SLS request signature; api.py: the operations; server.py: HTTP.
"""

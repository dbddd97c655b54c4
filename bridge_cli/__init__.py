"""``taobao-bridge``: the operator command of taobao-bridge (docs/OPERATIONS.md).

It talks to the HTTP API only (the routes of ``template.yaml``), on the local stack by default, any base URL
with ``--url``, or a deployed stage with ``--stack NAME`` (its CloudFormation outputs; every request signed
with SigV4 by the caller's AWS credentials). The rooms: ``cli`` (the argument tree and ``main``), ``target``
(where requests go: URL, stack outputs, secret), ``sigv4`` (signing), ``api`` (one method per route, errors as
``CliError``), ``output`` (tables, key/value lines, JSON), and one module per command group.
"""

"""The chaos suite: proves the outbound guarantees (nothing lost, nothing stuck, re-delivered only when the
outcome was unknown) while every fault the bridge must survive is injected at once.

``python -m chaos --records 10000 --seed 1`` (``make chaos``) starts a local stack, posts a seeded workload through
the intake API, runs the real sync handlers in worker processes for many rounds under sandbox, DynamoDB and
worker faults, turns the faults off, drains, and prints one table (docs/RELIABILITY.md keeps the last one).

The rooms:
- ``plan``: the configuration, the fault classes (``--faults platform,dynamodb,kills,odd``), each round's plan;
- ``dynamo_faults``: DynamoDB faults as botocore event handlers on the functions' client;
- ``workload``: the records, the requests and the merchant that posts them (and its ledger of answers);
- ``worker``: a warm Lambda container running ``functions/sync/app.py`` (a separate process);
- ``runs``: the pool of workers, invocations with deadlines, kills;
- ``timeshift``: leases, quota bans and backoffs brought to their end instead of waited for;
- ``scenario``: one run from start to finish;
- ``report``: the judgement: figures per kind, explained and unexplained re-deliveries, violations;
- ``render``: the table, the JSON and the docs section.
"""

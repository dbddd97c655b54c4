"""Local stand-ins for AWS and the platform: embedded DynamoDB, TOP sandbox, HTTP API adapter, CLI.

Development only: nothing here is deployed.
"""

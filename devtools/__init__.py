"""Development tools: `make run` (devstack), its inbox (devinbox) and the private MariaDB. Not part
of the product: the Docker image does not copy this package (tests/integration/test_deployment.py)."""

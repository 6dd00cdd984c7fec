#!/bin/bash
# LocalStack init hook (runs inside the container once it is ready). The stack itself is deployed from the
# host by localstack/up.sh with samlocal, because the build needs this repository and its .venv.
echo "rag-autotune: LocalStack is ready; deploy with 'make localstack-up' from the repository"

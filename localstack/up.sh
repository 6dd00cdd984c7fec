#!/usr/bin/env bash
# make localstack-up: LocalStack in Docker, template.yaml deployed with samlocal, model v0 and the demo
# corpus uploaded, the API URL printed. Written for laptops with Docker; NOT run on the development
# machines (no Docker there): see localstack/README.md for the open points.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "skipped: no Docker"; exit 0
fi
docker compose -f localstack/docker-compose.yml up -d --wait

# aws-sam-cli pins pydantic ~=2.13 and this project pins 2.14: sam and samlocal live in .sam-venv (the
# Makefile's, which `make test` also uses for its `sam build` check).
SAMVENV=.sam-venv
if [ ! -x "$SAMVENV/bin/samlocal" ]; then
  [ -x "$SAMVENV/bin/python" ] || env -u PYTHONPATH python3.11 -m venv "$SAMVENV"
  env -u PYTHONPATH "$SAMVENV/bin/pip" install -q aws-sam-cli==1.170.0 aws-sam-cli-local==1.71.0
fi
export AWS_ENDPOINT_URL=http://localhost:4566 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test

# The community edition applies no layers and has no ECR: `make localstack-build` writes the variant of
# template.yaml that vendors the serve layer into each function and ships the train step as a zip (CPU torch
# from TORCH_INDEX_URL), then sam-builds it. With LOCALSTACK_AUTH_TOKEN set (Pro), the train step stays an image.
TRAIN=zip; [ -n "${LOCALSTACK_AUTH_TOKEN:-}" ] && TRAIN=image
make localstack-build ARGS="--train $TRAIN"
"$SAMVENV/bin/samlocal" deploy --config-env localstack --template-file build/localstack/sam/template.yaml

eval "$(.venv/bin/python localstack/outputs.py)"   # RAG_BUCKET RAG_TABLE RAG_STATE_MACHINE_ARN API_URL API_KEY
export RAG_BUCKET RAG_TABLE RAG_STATE_MACHINE_ARN
.venv/bin/rag-autotune bootstrap
.venv/bin/rag-autotune ingest demo/corpus.jsonl
cat > .localstack.env <<ENV
export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export RAG_BUCKET=$RAG_BUCKET RAG_TABLE=$RAG_TABLE RAG_STATE_MACHINE_ARN=$RAG_STATE_MACHINE_ARN
export API_URL=$API_URL API_KEY=$API_KEY
ENV
echo "API  $API_URL   (x-api-key: $API_KEY)"
echo "CLI  source .localstack.env; .venv/bin/rag-autotune tune --wait"

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

# aws-sam-cli pins pydantic ~=2.13 and this project pins 2.14: samlocal gets its own venv.
SAMVENV=.venv-sam
if [ ! -x "$SAMVENV/bin/samlocal" ]; then
  python3.11 -m venv "$SAMVENV"
  "$SAMVENV/bin/pip" install -q aws-sam-cli==1.170.0 aws-sam-cli-local==1.71.0
fi
export AWS_ENDPOINT_URL=http://localhost:4566 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
"$SAMVENV/bin/samlocal" build --config-env localstack
"$SAMVENV/bin/samlocal" deploy --config-env localstack

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

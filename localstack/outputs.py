"""Print shell assignments for the LocalStack stack's outputs (used by up.sh and e2e.sh)."""

import shlex

import boto3

STACK = "rag-autotune"
cfn = boto3.client("cloudformation")
outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]}
api_id = outputs["ApiUrl"].split("//", 1)[1].split(".", 1)[0]
stage = outputs["ApiUrl"].rsplit("/", 1)[1]
key = boto3.client("apigateway").get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)["value"]
values = {
    "RAG_BUCKET": outputs["ArtifactBucketName"],
    "RAG_TABLE": outputs["FeedbackTableName"],
    "RAG_STATE_MACHINE_ARN": outputs["TuneStateMachineArn"],
    # LocalStack serves a REST API's stage at this path
    "API_URL": f"http://localhost:4566/restapis/{api_id}/{stage}/_user_request_",
    "API_KEY": key,
}
print("\n".join(f"{k}={shlex.quote(v)}" for k, v in values.items()))

"""template.yaml is the deployed system, and these tests exercise that file, offline:

- cfn-lint on the SAM source and on the transformed CloudFormation (the transformed one catches a bad
  runtime, a 5-field cron and a wrong !GetAtt that the source lint does not see);
- aws-sam-translator transforms it without errors;
- the transformed stack is created in moto's server CloudFormation, moto's gaps are closed by the named
  steps in rag_autotune.local.cfn, and the resulting resources carry the template's settings;
- the state machine it leaves in moto's executing backend runs the ASL with the stack's functions."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from rag_autotune.local import cfn, sfn
from rag_autotune.local.resources import load_template
from rag_autotune.paths import ASL, INGEST_ASL, REPO, TEMPLATE
from rag_autotune.settings import Settings

# Warnings about code the translator generates, not about the template: a DependsOn that a Ref already
# implies (W3005, on the usage plan), and a Fn::Sub left around a parameter SAM resolved (W1020).
TRANSFORMED_IGNORE = ["W3005", "W1020"]


def _lint(text: str, ignore: list[str] | None = None) -> list[str]:
    from cfnlint.api import ManualArgs, lint

    matches = lint(text, config=ManualArgs(regions=["us-east-1"], ignore_checks=ignore or []))
    return [f"{m.rule.id} {m.message}" for m in matches]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    return cfn.transformed_template(TEMPLATE)


def test_cfn_lint_passes_on_the_sam_source_and_on_the_transformed_template(transformed: dict[str, Any]) -> None:
    assert _lint(TEMPLATE.read_text()) == []
    assert _lint(json.dumps(transformed), TRANSFORMED_IGNORE) == []


def test_lint_of_the_transformed_template_catches_what_the_source_lint_misses(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    bad["Resources"]["TuneSwapFunction"]["Properties"]["Runtime"] = "python3.99"
    bad["Parameters"]["TuneSchedule"]["Default"] = "cron(0 3 * * *)"  # 5 fields: EventBridge wants 6
    subs = bad["Resources"]["TuneStateMachine"]["Properties"]["DefinitionSubstitutions"]
    subs["SwapFunctionArn"] = {"Fn::GetAtt": ["TuneSwapFunction", "Nope"]}
    packaged, _ = cfn.package(bad, REPO)
    found = {m.split()[0] for m in _lint(json.dumps(cfn.transform(packaged)), TRANSFORMED_IGNORE)}
    assert {"E3030", "W1030", "E1010"} <= found  # runtime, cron, GetAtt attribute


def test_transform_packages_local_paths_like_sam_package(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    functions = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    assert set(functions) == {
        "ApiFunction",
        "TunePrepareFunction",
        "TuneTrainFunction",
        "TunePlanFunction",
        "TuneEmbedFunction",
        "TuneAssembleFunction",
        "TuneSmokeFunction",
        "TuneSwapFunction",
        "TuneCleanupFunction",
        "IngestFunction",
        "IngestAssembleFunction",
        "IngestCleanupFunction",
    }
    for name, props in functions.items():
        if name == "TuneTrainFunction":
            assert props["PackageType"] == "Image" and "Runtime" not in props
        else:
            assert props["Code"]["S3Bucket"] == cfn.CODE_BUCKET
            assert props["Runtime"] == "python3.13"  # the layers' wheels are built for it (Globals comment)
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Architectures"] == ["x86_64"]
    machines = {k: v for k, v in resources.items() if v["Type"] == "AWS::StepFunctions::StateMachine"}
    assert set(machines) == {"TuneStateMachine", "IngestStateMachine"}
    for logical_id, asl in (("TuneStateMachine", ASL), ("IngestStateMachine", INGEST_ASL)):
        sm = machines[logical_id]
        assert sm["Properties"]["DefinitionS3Location"]["Bucket"] == cfn.CODE_BUCKET
        placeholders = set(re.findall(r"\$\{(\w+)\}", asl.read_text()))
        assert placeholders == set(sm["Properties"]["DefinitionSubstitutions"])


def test_ingest_fans_out_through_the_tunes_embed_map_state_for_state(doc: dict[str, Any]) -> None:
    """Issue 13.3: one embed Map, two workflows. Its states, its function and its width are the tune's."""
    tune, ingest = (json.loads(p.read_text())["States"] for p in (ASL, INGEST_ASL))
    for state in ("EmbedWidth", "EmbedShards"):
        assert ingest[state] == tune[state]
    subs = {
        k: doc["Resources"][k]["Properties"]["DefinitionSubstitutions"]
        for k in ("TuneStateMachine", "IngestStateMachine")
    }
    for key in ("EmbedFunctionArn", "EmbedConcurrency", "ArtifactBucket"):
        assert subs["IngestStateMachine"][key] == subs["TuneStateMachine"][key]
    env = doc["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert env["RAG_INGEST_STATE_MACHINE_ARN"] == {"Ref": "IngestStateMachine"}


def test_template_declares_what_the_issue_asks_for(doc: dict[str, Any], transformed: dict[str, Any]) -> None:
    res = doc["Resources"]
    table = res["FeedbackTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["TimeToLiveSpecification"]["Enabled"] is True
    bucket = res["ArtifactBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())

    # Drop-in auto-ingest: docs/ events → EventBridge → SQS → one ingest per batch, failed messages redelivered.
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    pattern = res["DocsRule"]["Properties"]["EventPattern"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "docs/"}]
    assert set(pattern["detail-type"]) == {"Object Created", "Object Deleted"}
    assert res["DocsRule"]["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["DocsQueue", "Arn"]}
    assert res["DocsQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["DocsDeadLetterQueue", "Arn"]
    }
    (mapping,) = [
        v["Properties"] for v in transformed["Resources"].values() if v["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] >= 100 and mapping["MaximumBatchingWindowInSeconds"] >= 10
    assert res["DocsQueue"]["Properties"]["VisibilityTimeout"] >= 6 * res["IngestFunction"]["Properties"]["Timeout"]

    env = doc["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "RagAutotune" and "POWERTOOLS_SERVICE_NAME" in env
    assert {
        "Stage",
        "TuneSchedule",
        "BedrockModelId",
        "QdrantUrl",
        "QdrantApiKey",
        "TuneMargin",
        "TuneP99BudgetMs",
    } <= set(doc["Parameters"])

    # One Api event per route of the Chalice app (read from its @app.route decorators).
    app_src = (REPO / "functions" / "api" / "app.py").read_text()
    routes = {
        (path, method.lower())
        for path, methods in re.findall(r'@app\.route\("([^"]+)", methods=\[([^\]]+)\]', app_src)
        for method in re.findall(r'"(\w+)"', methods)
    }
    assert len(routes) >= 4
    events = res["ApiFunction"]["Properties"]["Events"].values()
    assert {(e["Properties"]["Path"], e["Properties"]["Method"]) for e in events} == routes
    assert all(e["Type"] == "Api" for e in events)  # REST, payload 1.0: what Chalice routes
    auth = res["Api"]["Properties"]["Auth"]
    assert auth["ApiKeyRequired"] is True and auth["UsagePlan"]["Throttle"]
    assert res["Api"]["Properties"]["Cors"]["AllowOrigin"]

    # Every function has its own policies; no statement grants every action.
    for name, resource in res.items():
        if resource["Type"] == "AWS::Serverless::Function":
            assert resource["Properties"].get("Policies"), name
    for resource in transformed["Resources"].values():
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    assert "*" not in actions

    # The dashboard plots the metrics the code emits.
    body = json.dumps(res["Dashboard"]["Properties"]["DashboardBody"])
    emitted = set()
    for path in [
        REPO / "layers/serve/python/rag_autotune/http_api.py",
        *sorted((REPO / "functions/tune").glob("*.py")),
    ]:
        for line in path.read_text().splitlines():
            if "add_metric(" in line or "add_api_metric(" in line:
                emitted |= set(re.findall(r'"([A-Z]\w+)"', line))
    emitted |= {"TuneRejected", "TuneFailed"}  # cleanup.py names them from the run's status
    assert {"AskLatency", "VoteUp", "VoteDown", "TuneSwapped", "TuneSkipped"} <= emitted
    for metric in emitted:
        assert f'\\"{metric}\\"' in body or metric == "FeedbackRecorded", metric
    assert '\\"p50\\"' in body and '\\"p99\\"' in body

    assert {"ApiUrl", "ArtifactBucketName", "FeedbackTableName", "TuneStateMachineArn"} <= set(doc["Outputs"])


def test_rerank_permissions_exist_only_when_a_rerank_model_is_set(doc: dict[str, Any]) -> None:
    """Reranking is off by default: the API function may call Rerank, and invoke that one model, only when the
    RerankModelArn parameter names it; its environment passes the parameter to RAG_RERANK_MODEL_ARN."""
    assert doc["Parameters"]["RerankModelArn"]["Default"] == ""
    assert doc["Conditions"]["RerankOn"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RerankModelArn"}, ""]}]}
    res = doc["Resources"]
    api = res["ApiFunction"]["Properties"]
    assert api["Environment"]["Variables"]["RAG_RERANK_MODEL_ARN"] == {"Ref": "RerankModelArn"}
    assert "bedrock:Rerank" not in json.dumps(api["Policies"])
    (name,) = [n for n, r in res.items() if "bedrock:Rerank" in json.dumps(r)]
    policy = res[name]
    assert policy["Type"] == "AWS::IAM::Policy" and policy["Condition"] == "RerankOn"
    assert policy["Properties"]["Roles"] == [{"Ref": "ApiFunctionRole"}]
    grants = {s["Action"]: s["Resource"] for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert grants == {"bedrock:Rerank": "*", "bedrock:InvokeModel": {"Ref": "RerankModelArn"}}


def _api_events() -> list[dict[str, Any]]:
    return list(load_template(TEMPLATE)["Resources"]["ApiFunction"]["Properties"]["Events"].values())


def _layer_names(function: dict[str, Any], stack_name: str) -> list[str]:
    """The template names of a deployed function's layers, in order: moto names a layer after the stack and
    its transformed logical id, which is the template's name plus SAM's 10-hex-digit content hash."""
    names = [layer["Arn"].split(":")[-2].removeprefix(f"{stack_name}-") for layer in function.get("Layers", [])]
    return [re.sub(r"[0-9a-f]{10}(-.*)?$", "", n) for n in names]


@pytest.fixture(scope="module")
def stack(moto_url: str) -> tuple[cfn.LocalStack, Settings]:
    import uuid

    suffix = uuid.uuid4().hex[:8]
    settings = Settings(bucket=f"rag-tpl-{suffix}", table=f"rag-tpl-{suffix}")
    deployed = cfn.deploy_stack(settings, stack_name=f"rag-tpl-{suffix}", state_machine_name=f"rag-tpl-{suffix}-tune")
    return deployed, settings


def test_the_stack_is_created_in_moto_from_the_template(stack: tuple[cfn.LocalStack, Settings]) -> None:
    deployed, settings = stack
    assert deployed.steps == ["rest_api", "bucket", "table", "functions", "state_machine", "event_sources"]
    assert deployed.outputs["ArtifactBucketName"] == settings.bucket
    assert deployed.outputs["FeedbackTableName"] == settings.table
    assert deployed.outputs["TuneStateMachineArn"] == deployed.state_machine_arn
    assert deployed.outputs["ApiUrl"].endswith("/prod") and deployed.outputs["ApiKeyId"]
    region = settings.region

    ddb = boto3.client("dynamodb", region_name=region)
    table = ddb.describe_table(TableName=settings.table)["Table"]
    assert [g["IndexName"] for g in table["GlobalSecondaryIndexes"]] == ["gsi1"]
    assert ddb.describe_time_to_live(TableName=settings.table)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }
    backups = ddb.describe_continuous_backups(TableName=settings.table)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

    s3 = boto3.client("s3", region_name=region)
    assert s3.get_bucket_versioning(Bucket=settings.bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=settings.bucket)["PublicAccessBlockConfiguration"].values())
    # The template's only bucket policy statement is the TLS-only Deny, left out locally (plain HTTP endpoint).
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=settings.bucket)
    assert (
        s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"][0]["ID"] == "expire-old-object-versions"
    )
    assert s3.get_bucket_encryption(Bucket=settings.bucket)["ServerSideEncryptionConfiguration"]["Rules"]

    lam = boto3.client("lambda", region_name=region)
    api_fn = lam.get_function_configuration(FunctionName=f"{deployed.stack_name}-ApiFunction")
    assert api_fn["Runtime"] == "python3.13" and api_fn["MemorySize"] == 1769
    # TracingConfig and EphemeralStorage: moto ignores them (in CloudFormation and in the update API alike).
    assert _layer_names(api_fn, deployed.stack_name) == ["ServeLayer"]  # the API loads no tune code
    prepare = lam.get_function_configuration(FunctionName=f"{deployed.stack_name}-TunePrepareFunction")
    assert _layer_names(prepare, deployed.stack_name) == ["ServeLayer", "TuneLayer"]  # in this order
    assert api_fn["Environment"]["Variables"]["RAG_BUCKET"] == settings.bucket

    apigw = boto3.client("apigateway", region_name=region)
    api_id = deployed.physical["Api"]
    methods = {
        (r["path"], m)
        for r in apigw.get_resources(restApiId=api_id)["items"]
        for m in r.get("resourceMethods", {})
        if m != "OPTIONS"
    }
    declared = {(e["Properties"]["Path"], e["Properties"]["Method"].upper()) for e in _api_events()}
    assert methods == declared and ("/ask", "POST") in methods
    assert [s["stageName"] for s in apigw.get_stages(restApiId=api_id)["item"]] == ["prod"]
    (plan,) = [p for p in apigw.get_usage_plans()["items"] if p["apiStages"] == [{"apiId": api_id, "stage": "prod"}]]
    assert plan["throttle"] == {"burstLimit": 40, "rateLimit": 20.0}
    keys = apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]
    assert [k["id"] for k in keys] == [deployed.outputs["ApiKeyId"]]

    events = boto3.client("events", region_name=region)
    rule = deployed.physical["TuneStateMachineNightly"]
    assert events.describe_rule(Name=rule)["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert [t["Arn"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]] == [deployed.state_machine_arn]


def test_the_stacks_state_machine_executes_with_the_stacks_functions(
    stack: tuple[cfn.LocalStack, Settings], tmp_path: Path
) -> None:
    deployed, settings = stack
    client = boto3.client("stepfunctions", region_name=settings.region)
    definition = json.loads(client.describe_state_machine(stateMachineArn=deployed.state_machine_arn)["definition"])
    assert definition["States"]["Prepare"]["Resource"] == deployed.function_arns["TunePrepareFunction"]
    assert definition["States"]["Swap"]["Resource"] == deployed.function_arns["TuneSwapFunction"]
    (ingest,) = [
        m for m in client.list_state_machines()["stateMachines"] if m["name"] == f"{deployed.stack_name}-tune-ingest"
    ]
    ingest_asl = json.loads(client.describe_state_machine(stateMachineArn=ingest["stateMachineArn"])["definition"])
    assert ingest_asl["States"]["Assemble"]["Resource"] == deployed.function_arns["IngestAssembleFunction"]
    embed = ingest_asl["States"]["EmbedShards"]["ItemProcessor"]["States"]["EmbedShard"]["Resource"]
    assert embed == deployed.function_arns["TuneEmbedFunction"]

    # Nothing is live in a fresh stack: Prepare (the real handler, in its own process) raises NotReady, the
    # Catch routes to Cleanup (the stack's function too), and the run ends in the ASL's Failed state.
    arn = sfn.start(deployed.state_machine_arn, trigger="test")
    result = sfn.wait(arn, timeout_s=120, poll_s=0.3)
    history = client.get_execution_history(executionArn=arn)["events"]
    scheduled = [
        e["lambdaFunctionScheduledEventDetails"]["resource"] for e in history if e["type"] == "LambdaFunctionScheduled"
    ]
    assert scheduled == [deployed.function_arns["TunePrepareFunction"], deployed.function_arns["TuneCleanupFunction"]]
    failed = [e["lambdaFunctionFailedEventDetails"]["error"] for e in history if e["type"] == "LambdaFunctionFailed"]
    assert failed == ["NotReady"]
    assert result["status"] == "FAILED"
    assert history[-1]["executionFailedEventDetails"]["error"] == "TuneFailed"


def test_a_second_deploy_reuses_the_stack(stack: tuple[cfn.LocalStack, Settings]) -> None:
    deployed, settings = stack
    again = cfn.deploy_stack(settings, stack_name=deployed.stack_name, state_machine_name=f"{deployed.stack_name}-tune")
    assert again.state_machine_arn == deployed.state_machine_arn
    assert "rest_api" not in again.steps and again.function_arns == deployed.function_arns
    assert again.queue_sources == deployed.queue_sources and len(deployed.queue_sources) == 1


def test_train_on_sagemaker_is_a_parameter_with_its_own_role_and_a_narrow_start_policy(doc: dict[str, Any]) -> None:
    """Issue 13.1: TrainOn=sagemaker runs the train step as a training job (createTrainingJob.sync). The job's
    role and the state machine's right to start it exist only then; the lint covers both values."""
    params, res = doc["Parameters"], doc["Resources"]
    assert params["TrainOn"]["Default"] == "lambda" and params["TrainOn"]["AllowedValues"] == ["lambda", "sagemaker"]
    assert doc["Conditions"]["TrainOnSageMaker"] == {"Fn::Equals": [{"Ref": "TrainOn"}, "sagemaker"]}
    role, policy = res["TuneTrainJobRole"], res["TuneTrainJobStartPolicy"]
    assert role["Condition"] == policy["Condition"] == "TrainOnSageMaker"
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    sagemaker = next(s for s in statements if "sagemaker:CreateTrainingJob" in s["Action"])
    assert "training-job/rag-autotune-*" in json.dumps(sagemaker["Resource"])
    pass_role = next(s for s in statements if s["Action"] == "iam:PassRole")
    assert pass_role["Resource"] == {"Fn::GetAtt": ["TuneTrainJobRole", "Arn"]}
    assert policy["Properties"]["Roles"] == [{"Ref": "TuneStateMachineRole"}]  # the role SAM makes for the machine
    subs = res["TuneStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert subs["TrainJobRoleArn"] == {"Fn::If": ["TrainOnSageMaker", {"Fn::GetAtt": ["TuneTrainJobRole", "Arn"]}, ""]}
    asl = json.loads(ASL.read_text())
    assert asl["States"]["TrainJob"]["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"

    on_sagemaker = cfn.transformed_template(TEMPLATE, {"TrainOn": "sagemaker", "TrainImageUri": "1.dkr.ecr/x:y"})
    assert "TuneStateMachineRole" in on_sagemaker["Resources"]  # what the start policy attaches to
    assert _lint(json.dumps(on_sagemaker), TRANSFORMED_IGNORE) == []


def test_the_embed_map_is_as_wide_as_a_parameter_and_may_run_its_children(
    doc: dict[str, Any], transformed: dict[str, Any]
) -> None:
    """Issue 13.2: the embed Map (Distributed mode, items read from S3) runs EmbedConcurrency items at once;
    the state machine's role may read the item list and start, watch and stop its own child executions."""
    param = doc["Parameters"]["EmbedConcurrency"]
    assert param["Type"] == "Number" and param["MinValue"] == 1 and int(param["Default"]) >= 1
    props = doc["Resources"]["TuneStateMachine"]["Properties"]
    subs = props["DefinitionSubstitutions"]
    assert subs["EmbedConcurrency"] == {"Ref": "EmbedConcurrency"}
    assert subs["PlanFunctionArn"] == {"Fn::GetAtt": ["TunePlanFunction", "Arn"]}
    assert subs["AssembleFunctionArn"] == {"Fn::GetAtt": ["TuneAssembleFunction", "Arn"]}
    asl = json.loads(ASL.read_text())["States"]
    fan = asl["EmbedShards"]
    assert fan["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED" and "ItemReader" in fan
    assert fan["MaxConcurrencyPath"] == "$.embed.max" and "${EmbedConcurrency}" in json.dumps(asl["EmbedWidth"])
    assert fan["ItemProcessor"]["States"]["EmbedShard"]["Retry"]
    policies = json.dumps(props["Policies"])
    assert "states:StartExecution" in policies and "stateMachine:rag-autotune-tune" in policies
    assert {"S3ReadPolicy": {"BucketName": {"Ref": "ArtifactBucket"}}} in props["Policies"]
    for name in ("TunePlanFunction", "TuneEmbedFunction", "TuneAssembleFunction"):
        assert doc["Resources"][name]["Properties"]["Timeout"] <= 900
    wide = cfn.transformed_template(TEMPLATE, {"EmbedConcurrency": "500"})
    assert _lint(json.dumps(wide), TRANSFORMED_IGNORE) == []

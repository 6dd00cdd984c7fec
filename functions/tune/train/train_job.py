"""Tune step 2 as a SageMaker training job (template parameter TrainOn=sagemaker): the same image and the same
train step as handler.py, for vote volumes beyond one function.

SageMaker runs this file as the container's entrypoint (AlgorithmSpecification.ContainerEntrypoint in
infra/tune.asl.json). The run state comes as the hyperparameter `run` (JSON text), and the job's stopping
condition as `max_runtime_s`, from which the training budget derives as the Lambda's does from its remaining
time. A failure is written to /opt/ml/output/failure, which SageMaker reports as the job's FailureReason: the
workflow's Catch sends it to Cleanup, and the run's reason names it."""

import json
import sys
import time
import traceback
from pathlib import Path

HYPERPARAMETERS = Path("/opt/ml/input/config/hyperparameters.json")
FAILURE = Path("/opt/ml/output/failure")


def main(hyperparameters: Path = HYPERPARAMETERS, failure: Path = FAILURE) -> int:
    try:
        from rag_autotune.runtime import Runtime
        from rag_autotune.settings import get_settings
        from rag_autotune.tune import train_step
        from rag_autotune.tune.budget import train_budget_s
        from rag_autotune.tune.state import RunState

        values = json.loads(hyperparameters.read_text())
        state = RunState.from_event(json.loads(values["run"]))
        rt = Runtime(get_settings())
        budget_s = train_budget_s(rt.settings.tune_train_budget_s, float(values["max_runtime_s"]))
        train_step.train(state, store=rt.store, settings=rt.settings, now=time.time, budget_s=budget_s)
    except Exception as exc:
        traceback.print_exc()
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(f"{type(exc).__name__}: {exc}"[:1024])  # SageMaker keeps 1024 characters
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

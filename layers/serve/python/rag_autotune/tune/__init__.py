"""The nightly tune: prepare → train → embed → smoke → swap, each a Step Functions task."""

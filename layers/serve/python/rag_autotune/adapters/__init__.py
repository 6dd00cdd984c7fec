"""Adapters: the only modules that import boto3, qdrant_* or onnxruntime."""

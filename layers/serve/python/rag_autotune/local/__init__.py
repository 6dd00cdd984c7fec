"""Local stand-ins: create the AWS resources template.yaml declares in whatever endpoint boto3 points at."""

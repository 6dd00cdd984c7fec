"""Local mode: the stack on one machine, with moto's server standing in for AWS."""

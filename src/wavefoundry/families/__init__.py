"""How each model trains and makes audio (a `Family` per model), their registry, model I/O
and the MLflow pyfunc wrapper."""

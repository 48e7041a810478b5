"""The MLflow model registry: candidates, promotion through the gate, rollback, comparison."""

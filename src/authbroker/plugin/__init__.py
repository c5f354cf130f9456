"""What ``azure.identity.broker`` runs: the sans-I/O core, its drivers and the backends."""

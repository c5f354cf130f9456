"""Drop-in ``azure.identity.broker`` (being built; see issue 4)."""

"""Plugin backends, one module each: ``native`` (msal + pymsalruntime), ``dbus`` (our Broker1
client) and ``browser`` (msal's loopback flow); ``select`` picks one. Modules are imported on
first use only, so that ``import azure.identity.broker`` stays cheap."""

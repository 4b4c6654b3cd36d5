"""kopf handlers: thin glue from events to reconcile and status refresh."""

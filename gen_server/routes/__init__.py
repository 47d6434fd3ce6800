"""HTTP routers: validate, call a service, shape the response."""

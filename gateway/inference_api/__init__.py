"""The inference HTTP API's parts: the service's lifecycle (`state`), callers (`callers`), request
bodies (`schemas`), OpenAI wire shapes (`openai`) and the one error handler (`errors`).
The routes themselves are `gateway.routes.inference`."""

"""The SCP side: request signing, endpoints, API versions, typed answers and the HTTP client."""

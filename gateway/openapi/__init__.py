"""The OpenAPI document, the /docs page and the Postman collection."""

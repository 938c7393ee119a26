// rmds API viewer: starts Swagger UI (vendored, see VENDORED.md) on the agent's
// own OpenAPI document. Kept out of index.html because the CSP forbids inline
// script. validatorUrl: null keeps Swagger UI from loading its badge from the
// public validator (an outside image the CSP would block anyway).
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
  });
});

// Package api is the service's contract: the OpenAPI 3.1 document
// (openapi.yaml, the source; openapi.json, its generated JSON form, which
// the server serves) and, in api/client, the Go client generated from it.
package api

import _ "embed" // the document

// Both are generated from openapi.yaml and committed; a test fails when
// either is stale. The generator is run at a pinned version rather than
// required by the module, so it is no dependency of the service.
//go:generate go run ./internal/tojson openapi.yaml openapi.json
//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -config client/oapi-codegen.yaml openapi.yaml

//go:embed openapi.json
var document string

// JSON returns the OpenAPI document as JSON, a copy of its own.
func JSON() []byte { return []byte(document) }

package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// decode reads exactly one JSON object of type T from the body, rejecting
// unknown fields, wrong types, trailing data and bodies over MaxBodyBytes.
// On failure it has written the problem response and returns false.
func decode[T any](w http.ResponseWriter, r *http.Request) (T, bool) {
	var v T
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeProblem(w, r, http.StatusUnsupportedMediaType, "The body must be application/json.")
			return v, false
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(&v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errTrailing
		}
	}
	if err == nil {
		return v, true
	}
	status, detail := decodeProblem(err)
	writeProblem(w, r, status, detail)
	return v, false
}

var errTrailing = errors.New("trailing data")

func decodeProblem(err error) (int, string) {
	var (
		tooBig    *http.MaxBytesError
		syntax    *json.SyntaxError
		wrongType *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("The body must be at most %d bytes.", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, "The body is empty; a JSON object is required."
	case errors.As(err, &syntax):
		return http.StatusBadRequest, fmt.Sprintf("The body is not valid JSON (at byte %d).", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest, "The body is not valid JSON (it ends too early)."
	case errors.As(err, &wrongType):
		if wrongType.Field == "" {
			return http.StatusBadRequest, "The body must be a JSON object."
		}
		return http.StatusBadRequest, fmt.Sprintf("Field %q must be a %s.", wrongType.Field, jsonType(wrongType.Type.Kind().String()))
	case errors.Is(err, errTrailing):
		return http.StatusBadRequest, "The body must hold a single JSON object."
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return http.StatusBadRequest, "Unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ") + "."
	default:
		return http.StatusBadRequest, "The body could not be read."
	}
}

// jsonType names a Go kind the way a JSON client thinks of it.
func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "float64", "float32", "int", "int64", "int32":
		return "number"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	default:
		return "object"
	}
}

package httpx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// decode reads exactly one JSON object of type T from the body, strictly:
// names match case-sensitively, a name may appear once in each object at
// any depth, strings must be valid UTF-8, and unknown fields, wrong types,
// trailing data and bodies over MaxBodyBytes are refused. A client's typo is
// an error to report, not something to guess at. On failure it has written
// the problem response and returns false.
func decode[T any](w http.ResponseWriter, r *http.Request) (T, bool) {
	var v T
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeProblem(w, r, http.StatusUnsupportedMediaType, "The body must be application/json.")
			return v, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err == nil && len(bytes.Trim(body, " \t\r\n")) == 0 {
		err = errEmpty
	}
	if err == nil {
		// The defaults of encoding/json v2 reject duplicate names and
		// invalid UTF-8 and match names exactly; only unknown members need
		// asking for.
		err = json.Unmarshal(body, &v, json.RejectUnknownMembers(true))
	}
	if err == nil {
		return v, true
	}
	status, detail := decodeProblem(err)
	writeProblem(w, r, status, detail)
	return v, false
}

var errEmpty = errors.New("empty body")

func decodeProblem(err error) (int, string) {
	var (
		tooBig    *http.MaxBytesError
		syntactic *jsontext.SyntacticError
		semantic  *json.SemanticError
	)
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("The body must be at most %d bytes.", tooBig.Limit)
	case errors.Is(err, errEmpty):
		return http.StatusBadRequest, "The body is empty; a JSON object is required."
	case errors.As(err, &syntactic):
		switch {
		case errors.Is(syntactic.Err, jsontext.ErrDuplicateName):
			return http.StatusBadRequest, fmt.Sprintf("Field %q appears more than once%s; each field may be given once.",
				syntactic.JSONPointer.LastToken(), within(syntactic.JSONPointer.Parent()))
		case errors.Is(syntactic.Err, io.ErrUnexpectedEOF):
			return http.StatusBadRequest, "The body is not valid JSON (it ends too early)."
		default:
			return http.StatusBadRequest, fmt.Sprintf("The body is not valid JSON (%v, at byte %d).", syntactic.Err, syntactic.ByteOffset)
		}
	case errors.As(err, &semantic):
		switch {
		case errors.Is(semantic.Err, json.ErrUnknownName):
			return http.StatusBadRequest, fmt.Sprintf("Unknown field %q%s (field names are case-sensitive).",
				semantic.JSONPointer.LastToken(), within(semantic.JSONPointer.Parent()))
		case semantic.JSONPointer == "":
			return http.StatusBadRequest, "The body must be a JSON object."
		default:
			return http.StatusBadRequest, fmt.Sprintf("Field %q must be %s.", fieldName(semantic.JSONPointer), jsonType(semantic.GoType))
		}
	default:
		// A body that broke off (the client went away, a bad chunk):
		// observe logs a departed client as 499 whatever is written here.
		return http.StatusBadRequest, "The body could not be read."
	}
}

// within names the object a problem is in, when it is not the body itself.
func within(p jsontext.Pointer) string {
	if p == "" {
		return ""
	}
	return " in " + fieldName(p)
}

// fieldName writes a JSON pointer (/params/fast_window) the way problems
// name fields elsewhere (params.fast_window).
func fieldName(p jsontext.Pointer) string {
	var parts []string
	for tok := range p.Tokens() {
		parts = append(parts, tok)
	}
	return strings.Join(parts, ".")
}

// jsonType names a Go type the way a JSON client thinks of it.
func jsonType(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "a valid value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Float32, reflect.Float64:
		return "a number (within range)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number (within range)"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

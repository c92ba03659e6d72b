// Package apitest holds the API to its OpenAPI document in tests: every
// request and response that goes through a Contract's Handler or Transport
// is checked against api/openapi.yaml, so that a handler that drifts from
// the document fails its tests. Only tests (and the document's generator)
// import it; the binaries do not.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/backtestd/backtestd/api"
)

// Load parses an OpenAPI document (JSON or YAML) and checks that it is a
// valid one.
func Load(ctx context.Context, data []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load OpenAPI document: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("validate OpenAPI document: %w", err)
	}
	return doc, nil
}

// Contract is the API's document, ready to check exchanges against.
type Contract struct {
	doc     *openapi3.T
	router  routers.Router
	problem *openapi3.Schema
	// unchecked are path prefixes the document leaves out: River UI is an
	// application of its own, mounted for operators.
	unchecked []string
}

// New returns the Contract of the document the server serves.
func New(ctx context.Context) (*Contract, error) {
	return FromDocument(ctx, api.JSON())
}

// FromDocument returns the Contract of a given document.
func FromDocument(ctx context.Context, data []byte) (*Contract, error) {
	doc, err := Load(ctx, data)
	if err != nil {
		return nil, err
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route OpenAPI document: %w", err)
	}
	problem := doc.Components.Schemas["Problem"]
	if problem == nil || problem.Value == nil {
		return nil, errors.New("the OpenAPI document has no Problem schema")
	}
	return &Contract{doc: doc, router: router, problem: problem.Value, unchecked: []string{"/riverui"}}, nil
}

// Exchange is one request and its response, bodies read.
type Exchange struct {
	Request     *http.Request
	RequestBody []byte
	Status      int
	Header      http.Header
	Body        []byte
}

// Check returns what, in the exchange, the document does not allow; nil if
// nothing. A request the document refuses must be answered with a 4xx
// problem; every response must be one the document gives for its request,
// headers and body included.
func (c *Contract) Check(ctx context.Context, ex Exchange) error {
	req := ex.Request
	for _, prefix := range c.unchecked {
		if req.URL.Path == prefix || strings.HasPrefix(req.URL.Path, prefix+"/") {
			return nil
		}
	}
	problems := c.checkProblemBody(ex)
	route, pathParams, err := c.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		if ex.Status != http.StatusNotFound {
			problems = append(problems, fmt.Sprintf("no path of the document matches %s, answered %d, not 404", req.URL.Path, ex.Status))
		}
		problems = append(problems, c.checkAsProblem(ex)...)
		return joined(req, ex.Status, problems)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		if ex.Status != http.StatusMethodNotAllowed {
			problems = append(problems, fmt.Sprintf("the path does not take %s in the document, answered %d, not 405", req.Method, ex.Status))
		}
		problems = append(problems, c.checkAsProblem(ex)...)
		problems = append(problems, c.checkAllow(req, ex.Header)...)
		return joined(req, ex.Status, problems)
	case err != nil:
		return fmt.Errorf("%s %s: find route: %w", req.Method, req.URL.Path, err)
	}

	opts := &openapi3filter.Options{
		MultiError:            true,
		IncludeResponseStatus: true,
		AuthenticationFunc:    bearerPresent,
		// The check reads the exchange; it does not add the defaults to
		// the request's query.
		SkipSettingDefaults: true,
	}
	if len(ex.RequestBody) > 0 && req.Header.Get("Content-Type") == "" {
		// The API reads a body without Content-Type as JSON, as the
		// document says.
		req = req.Clone(ctx)
		req.Header.Set("Content-Type", "application/json")
		req.Body = io.NopCloser(bytes.NewReader(ex.RequestBody))
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: pathParams, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if reqErr == nil {
		reqErr = unknownQueryParams(req, route.Operation, route.PathItem)
	}
	if reqErr != nil && (ex.Status < 400 || ex.Status > 499) {
		problems = append(problems, fmt.Sprintf("the document refuses the request (%v), answered %d, not 4xx", reqErr, ex.Status))
	}
	respIn := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: ex.Status, Header: ex.Header, Options: opts,
	}
	respIn.SetBodyBytes(ex.Body)
	if err := openapi3filter.ValidateResponse(ctx, respIn); err != nil {
		problems = append(problems, "response: "+err.Error())
	}
	if resp := route.Operation.Responses.Status(ex.Status); resp != nil && resp.Value != nil &&
		len(resp.Value.Content) == 0 && len(ex.Body) > 0 && req.Method != http.MethodHead {
		problems = append(problems, fmt.Sprintf("the document gives %d no body, the response has %d bytes", ex.Status, len(ex.Body)))
	}
	if req.Method == http.MethodOptions {
		problems = append(problems, c.checkAllow(req, ex.Header)...)
	}
	return joined(req, ex.Status, problems)
}

// bearerPresent passes a request that carries a Bearer credential: whether
// the key is valid is the server's to say, and a 401 is in the document.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errors.New("no Bearer credential")
	}
	return nil
}

// unknownQueryParams refuses query parameters the operation does not
// declare: the API answers them with 400, so the document must not allow
// them either.
func unknownQueryParams(req *http.Request, op *openapi3.Operation, item *openapi3.PathItem) error {
	declared := map[string]bool{}
	for _, params := range []openapi3.Parameters{item.Parameters, op.Parameters} {
		for _, p := range params {
			if p.Value != nil && p.Value.In == openapi3.ParameterInQuery {
				declared[p.Value.Name] = true
			}
		}
	}
	var unknown []string
	for name := range req.URL.Query() {
		if !declared[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("query parameters not in the document: %s", strings.Join(unknown, ", "))
	}
	return nil
}

// checkAsProblem checks a response the router gave (404, 405) rather than
// an operation: a problem with the correlation header.
func (c *Contract) checkAsProblem(ex Exchange) []string {
	if mt := mediaType(ex.Header); mt != "application/problem+json" {
		return []string{fmt.Sprintf("Content-Type %q, not application/problem+json", mt)}
	}
	var v any
	if err := json.Unmarshal(ex.Body, &v); err != nil {
		return []string{"the problem is not JSON: " + err.Error()}
	}
	var out []string
	if err := c.problem.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
		out = append(out, "the problem does not match the Problem schema: "+err.Error())
	}
	if ex.Header.Get("X-Correlation-ID") == "" {
		out = append(out, "no X-Correlation-ID header")
	}
	return out
}

// checkProblemBody checks, of any problem, what no schema can say: its
// status and correlation ID are the response's, and no input is named twice.
func (c *Contract) checkProblemBody(ex Exchange) []string {
	if mediaType(ex.Header) != "application/problem+json" {
		return nil
	}
	var p struct {
		Status        int    `json:"status"`
		CorrelationID string `json:"correlation_id"`
		InvalidParams []struct {
			Name string `json:"name"`
		} `json:"invalid_params"`
	}
	if err := json.Unmarshal(ex.Body, &p); err != nil {
		return nil // the schema check says what is wrong
	}
	var out []string
	if p.Status != ex.Status {
		out = append(out, fmt.Sprintf("the problem's status is %d, the response's %d", p.Status, ex.Status))
	}
	if h := ex.Header.Get("X-Correlation-ID"); p.CorrelationID != h {
		out = append(out, fmt.Sprintf("the problem's correlation_id is %q, the header's %q", p.CorrelationID, h))
	}
	seen := map[string]bool{}
	for _, ip := range p.InvalidParams {
		if seen[ip.Name] {
			out = append(out, fmt.Sprintf("invalid_params names %q twice", ip.Name))
		}
		seen[ip.Name] = true
	}
	return out
}

// checkAllow checks that Allow names exactly the methods the document gives
// the request's path.
func (c *Contract) checkAllow(req *http.Request, h http.Header) []string {
	probe := req.Clone(req.Context())
	probe.Method = http.MethodOptions // every path of the document has OPTIONS
	route, _, err := c.router.FindRoute(probe)
	if err != nil {
		return []string{fmt.Sprintf("no OPTIONS for %s in the document: %v", req.URL.Path, err)}
	}
	var want []string
	for method := range route.PathItem.Operations() {
		want = append(want, strings.ToUpper(method))
	}
	var got []string
	for m := range strings.SplitSeq(h.Get("Allow"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			got = append(got, m)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		return []string{fmt.Sprintf("Allow %q, the document's methods are %s", h.Get("Allow"), strings.Join(want, ", "))}
	}
	return nil
}

func mediaType(h http.Header) string {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt
}

func joined(req *http.Request, status int, problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s %s -> %d does not follow api/openapi.yaml:\n  %s",
		req.Method, req.URL.RequestURI(), status, strings.Join(problems, "\n  "))
}

// Reporter is the part of testing.TB a Contract reports to.
type Reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// Handler returns h, every exchange of which is checked; what does not
// follow the document is reported to t as an error.
func (c *Contract) Handler(t Reporter, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			t.Errorf("read request body: %v", err)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		res := rec.Result()
		ex := Exchange{Request: r, RequestBody: body, Status: res.StatusCode, Header: res.Header, Body: rec.Body.Bytes()}
		ex.Request.Body = io.NopCloser(bytes.NewReader(body))
		if err := c.Check(r.Context(), ex); err != nil {
			t.Errorf("%v", err)
		}
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// Transport returns rt (http.DefaultTransport if nil), every exchange of
// which is checked; what does not follow the document is reported to t as
// an error.
func (c *Contract) Transport(t Reporter, rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		body, err := readBody(req)
		if err != nil {
			return nil, err
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		respBody, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read response body: %w", err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(respBody))
		check := req.Clone(req.Context())
		check.Body = io.NopCloser(bytes.NewReader(body))
		if err := c.Check(req.Context(), Exchange{
			Request: check, RequestBody: body, Status: resp.StatusCode, Header: resp.Header, Body: respBody,
		}); err != nil {
			t.Errorf("%v", err)
		}
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readBody reads r's body and gives r a copy to read again.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

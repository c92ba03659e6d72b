// Package logcatalog is the log contract written once: every event the
// service logs (Events) and every key its lines carry (Keys), and the
// documents rendered from them, docs/log-schema.json (the JSON Schema of a
// line) and the events table of docs/logging.md. go generate
// ./internal/logcatalog writes those; the tests render them again and fail
// when the files differ, and check every line they see against the schema.
package logcatalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/backtestd/backtestd/internal/obs"
)

// The generated files, relative to the module's root.
const (
	SchemaPath  = "docs/log-schema.json"
	LoggingPath = "docs/logging.md"
)

// SchemaID is the schema's $id.
const SchemaID = "https://backtestd.dev/log-line.schema.json"

// Fix is the command that regenerates the files.
const Fix = "go generate ./internal/logcatalog (or make generate)"

// The markers around the generated events table in docs/logging.md.
const (
	BeginTable = "<!-- BEGIN GENERATED: events table; edit internal/logcatalog/events.go, then run go generate ./internal/logcatalog -->"
	EndTable   = "<!-- END GENERATED: events table -->"
)

// Schema returns docs/log-schema.json. Every key's schema is in $defs; the
// keys the handler writes or binds (header, context, cut) are checked on
// every line, the others only on the lines of the events that list them: a
// library's line may carry a field of its own under the same name.
func Schema() ([]byte, error) {
	defs := make(properties, 0, len(Keys))
	for _, k := range Keys {
		v := k.Value
		if k.Name == obs.KeyEvent {
			v = Value{Enum: eventNames()}
		}
		defs = append(defs, property{name: k.Name, schema: described{Description: k.Doc, Value: v}})
	}
	var general properties
	for _, k := range cutKeys() {
		general = append(general, refTo(k))
	}
	doc := schemaDoc{
		Schema: "https://json-schema.org/draft/2020-12/schema",
		ID:     SchemaID,
		Title:  "backtestd log line",
		Description: "One JSON line of the services' stdout, generated from the catalog of internal/logcatalog " +
			"by go generate ./internal/logcatalog; docs/logging.md explains each key and event. A line cut to its minimal form " +
			"(line_truncated) keeps only its header and context fields, so the per-event rules do not apply to it.",
		Type:       "object",
		Required:   HeaderKeys(),
		Properties: general,
		AllOf:      rules(),
		Defs:       defs,
	}
	b, err := marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode the log schema: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, fmt.Errorf("indent the log schema: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// rules are the per-event rules of the schema, and the rule of cut lines.
func rules() []rule {
	notCut := &condition{Required: []string{obs.KeyLineTruncate}}
	general := cutKeys()
	var out []rule
	var jobEvents []string
	for _, e := range Events {
		required, optional := e.Scope.Keys()
		required = append(slices.Clone(required), e.Required...)
		then := outcome{
			Properties: properties{{name: obs.KeyLevel, schema: Value{Enum: levelNames(e.Levels)}}},
			Required:   required,
		}
		if len(e.Services) > 0 {
			then.Properties = append(then.Properties, property{name: obs.KeyService, schema: Value{Enum: e.Services}})
		}
		for _, k := range allowedKeys(e, optional) {
			if !slices.Contains(general, k) {
				then.Properties = append(then.Properties, refTo(k))
			}
		}
		if !e.Library {
			then.PropertyNames = &Value{Enum: allowedKeys(e, optional)}
		}
		out = append(out, rule{
			If: condition{
				Properties: map[string]Value{obs.KeyEvent: {Const: e.Name}},
				Required:   []string{obs.KeyEvent}, Not: notCut,
			},
			Then: then,
		})
		if len(e.RequiredAtError) > 0 {
			out = append(out, rule{
				If: condition{
					Properties: map[string]Value{obs.KeyEvent: {Const: e.Name}, obs.KeyLevel: {Const: "error"}},
					Required:   []string{obs.KeyEvent, obs.KeyLevel}, Not: notCut,
				},
				Then: outcome{Required: e.RequiredAtError},
			})
		}
		if e.Scope == ScopeJob {
			jobEvents = append(jobEvents, e.Name)
		}
	}
	out = append(out,
		rule{
			If: condition{
				Properties: map[string]Value{obs.KeyEvent: {Enum: jobEvents}, obs.KeyJobKind: {Const: RunJobKind}},
				Required:   []string{obs.KeyEvent, obs.KeyJobKind}, Not: notCut,
			},
			Then: outcome{Required: RunKeys()},
		},
		rule{
			If:   condition{Required: []string{obs.KeyLineTruncate}},
			Then: outcome{Required: TruncationKeys(), PropertyNames: &Value{Enum: general}},
		})
	return out
}

// allowedKeys are the keys a line of e may carry. A library's line carries
// its own fields besides.
func allowedKeys(e EventSpec, scopeOptional []string) []string {
	required, _ := e.Scope.Keys()
	var out []string
	for _, group := range [][]string{HeaderKeys(), required, scopeOptional, e.Required, e.RequiredAtError, e.Optional} {
		for _, k := range group {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

// cutKeys are the keys a cut line may carry: its header, any context field
// and the note of the cut. The handler writes them, so they are the same on
// every line.
func cutKeys() []string {
	out := HeaderKeys()
	for _, s := range []Scope{ScopeRequest, ScopeJob} {
		required, optional := s.Keys()
		for _, k := range append(required, optional...) {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return append(out, TruncationKeys()...)
}

func eventNames() []string {
	out := make([]string, 0, len(Events))
	for _, e := range Events {
		out = append(out, e.Name)
	}
	slices.Sort(out)
	return out
}

// LevelName is a level as lines write it.
func LevelName(l slog.Level) string {
	return strings.ToLower(l.String())
}

func levelNames(levels []slog.Level) []string {
	out := make([]string, 0, len(levels))
	for _, l := range levels {
		out = append(out, LevelName(l))
	}
	return out
}

// EventsTable returns the events table of docs/logging.md, markers excluded.
func EventsTable() string {
	var b strings.Builder
	b.WriteString("| event | service | level | context | keys | when |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, e := range Events {
		level := strings.Join(levelNames(e.Levels), ", ")
		if e.Library {
			level = "as the library said"
		}
		if e.LevelNote != "" {
			level += " (" + e.LevelNote + ")"
		}
		scope := e.Scope.String()
		switch {
		case e.Library:
			scope = "the caller's"
		case scope == "":
			scope = "none"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n",
			e.Name, strings.Join(e.Services, ", "), level, scope, keysCell(e), e.When)
	}
	return b.String()
}

func keysCell(e EventSpec) string {
	list := func(keys []string) string {
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			p := "`" + k + "`"
			if n := e.Notes[k]; n != "" {
				p += " (" + n + ")"
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, ", ")
	}
	var parts []string
	if len(e.Required) > 0 {
		parts = append(parts, list(e.Required))
	}
	if len(e.RequiredAtError) > 0 {
		parts = append(parts, "at error also "+list(e.RequiredAtError))
	}
	if len(e.Optional) > 0 {
		parts = append(parts, "optional "+list(e.Optional))
	}
	if e.Library {
		parts = append(parts, "the library's own fields")
	}
	return strings.Join(parts, "; ")
}

// Logging returns doc, the text of docs/logging.md, with its events table
// generated again.
func Logging(doc []byte) ([]byte, error) {
	begin := bytes.Index(doc, []byte(BeginTable+"\n"))
	end := bytes.Index(doc, []byte(EndTable))
	if begin < 0 || end < begin {
		return nil, errors.New(LoggingPath + " lacks the markers of its events table, " + BeginTable + " and " + EndTable)
	}
	var out bytes.Buffer
	out.Write(doc[:begin+len(BeginTable)+1])
	out.WriteString(EventsTable())
	out.Write(doc[end:])
	return out.Bytes(), nil
}

// schemaDoc is the schema's top level, in the order it is written.
type schemaDoc struct {
	Schema      string     `json:"$schema"`
	ID          string     `json:"$id"`
	Title       string     `json:"title"`
	Description string     `json:"description"`
	Type        string     `json:"type"`
	Required    []string   `json:"required"`
	Properties  properties `json:"properties"`
	AllOf       []rule     `json:"allOf"`
	Defs        properties `json:"$defs"`
}

// described is a key's schema with its description first.
type described struct {
	Description string `json:"description,omitempty"`
	Value
}

// property is a key and its schema: a described or an Value, or a
// reference to the key's schema in $defs.
type property struct {
	name   string
	schema any
}

func refTo(key string) property {
	return property{name: key, schema: map[string]string{"$ref": "#/$defs/" + key}}
}

// properties keeps keys in order: the catalog's, which groups them.
type properties []property

// MarshalJSON writes the properties as one object, in order.
func (p properties) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, prop := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		name, err := marshal(prop.name)
		if err != nil {
			return nil, err
		}
		value, err := marshal(prop.schema)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", prop.name, err)
		}
		b.Write(name)
		b.WriteByte(':')
		b.Write(value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshal is json.Marshal without the escapes of <, > and &, which the
// patterns and descriptions may hold.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

type rule struct {
	If   condition `json:"if"`
	Then outcome   `json:"then"`
}

type condition struct {
	Properties map[string]Value `json:"properties,omitempty"`
	Required   []string         `json:"required,omitempty"`
	Not        *condition       `json:"not,omitempty"`
}

type outcome struct {
	Properties    properties `json:"properties,omitempty"`
	Required      []string   `json:"required,omitempty"`
	PropertyNames *Value     `json:"propertyNames,omitempty"`
}

// Package prom measures a Canary's metrics in Prometheus: a client built from an address and
// optional credentials whose queries come back as one number, no data, or an error saying
// why; Istio's built-in analysis queries (request success rate, p99 request duration,
// request count); and custom PromQL templates.
//
// Credentials never appear in errors: they are not part of any message this package
// builds, and anything a server echoes back is scrubbed of them.
package prom

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// DefaultTimeout bounds one query when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Keys of a credentials Secret's data (Flagger's, plus a token and a CA).
const (
	SecretKeyToken    = "token"    // bearer token
	SecretKeyUsername = "username" // basic auth, with password
	SecretKeyPassword = "password"
	SecretKeyCA       = "ca.crt" // PEM certificates to trust besides the system's
)

// Credentials authenticate to Prometheus: a bearer token, or a username and password, and
// optionally a CA bundle. Printing them shows which are set, never their values.
type Credentials struct {
	BearerToken string
	Username    string
	Password    string
	CA          []byte // PEM
}

// String names the kinds of credentials set, without values.
func (c Credentials) String() string {
	var kinds []string
	if c.BearerToken != "" {
		kinds = append(kinds, "bearer token")
	}
	if c.Username != "" || c.Password != "" {
		kinds = append(kinds, "basic auth")
	}
	if len(c.CA) > 0 {
		kinds = append(kinds, "CA")
	}
	if len(kinds) == 0 {
		return "no credentials"
	}
	return strings.Join(kinds, ", ") + " (redacted)"
}

// GoString keeps %#v as discreet as %v.
func (c Credentials) GoString() string { return "prom.Credentials{" + c.String() + "}" }

// CredentialsFromSecret reads a Secret's data: "token" (bearer) or "username" and "password"
// (basic auth), and optionally "ca.crt". Other keys are ignored. Errors name keys, never
// values.
func CredentialsFromSecret(data map[string][]byte) (Credentials, error) {
	c := Credentials{
		BearerToken: string(data[SecretKeyToken]),
		Username:    string(data[SecretKeyUsername]),
		Password:    string(data[SecretKeyPassword]),
		CA:          data[SecretKeyCA],
	}
	var errs []error
	for _, k := range []string{SecretKeyToken, SecretKeyUsername, SecretKeyPassword, SecretKeyCA} {
		if v, ok := data[k]; ok && len(v) == 0 {
			errs = append(errs, fmt.Errorf("key %q is empty", k))
		}
	}
	_, hasUser := data[SecretKeyUsername]
	_, hasPassword := data[SecretKeyPassword]
	switch {
	case hasUser && !hasPassword:
		errs = append(errs, fmt.Errorf("key %q is set but %q is not: basic auth needs both", SecretKeyUsername, SecretKeyPassword))
	case hasPassword && !hasUser:
		errs = append(errs, fmt.Errorf("key %q is set but %q is not: basic auth needs both", SecretKeyPassword, SecretKeyUsername))
	}
	if _, hasToken := data[SecretKeyToken]; hasToken && (hasUser || hasPassword) {
		errs = append(errs, fmt.Errorf("keys %q and %q are both set: use a bearer token or basic auth, not both", SecretKeyToken, SecretKeyUsername))
	}
	if len(errs) > 0 {
		return Credentials{}, fmt.Errorf("Prometheus credentials: %w", errors.Join(errs...))
	}
	return c, nil
}

// Config says how to reach Prometheus.
type Config struct {
	// Address is the base URL of Prometheus' HTTP API, such as
	// http://prometheus.istio-system:9090 (a path prefix is kept). Credentials do not belong
	// in it.
	Address     string
	Credentials Credentials
	// InsecureSkipVerify accepts any server certificate (https only), as Flagger allows.
	InsecureSkipVerify bool
	// Timeout bounds each query, on the client and on the server; default DefaultTimeout.
	Timeout time.Duration
}

// Client queries one Prometheus. It is safe for concurrent use.
type Client struct {
	api     promv1.API
	address string
	timeout time.Duration
	secrets []string // to scrub from anything a server sends back
}

// NewClient checks cfg and builds a client; it does not contact Prometheus.
func NewClient(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Address)
	if err != nil {
		return nil, errors.New("Prometheus address is not a URL: want http(s)://host:port")
	}
	if u.User != nil {
		return nil, fmt.Errorf("Prometheus address %s holds credentials: put them in the credentials Secret instead", u.Redacted())
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("Prometheus address %q: want http(s)://host:port[/path] without query or fragment", cfg.Address)
	}
	creds := cfg.Credentials
	if creds.BearerToken != "" && (creds.Username != "" || creds.Password != "") {
		return nil, errors.New("Prometheus credentials: a bearer token and basic auth are both set; use one")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: cfg.InsecureSkipVerify, //nolint:gosec // the user's explicit choice, as in Flagger
	}
	if len(creds.CA) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(creds.CA) {
			return nil, fmt.Errorf("Prometheus credentials: %q holds no PEM certificate", SecretKeyCA)
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	var rt http.RoundTripper = transport
	var secrets []string
	switch {
	case creds.BearerToken != "":
		rt = authRoundTripper{next: rt, header: "Bearer " + creds.BearerToken}
		secrets = append(secrets, creds.BearerToken)
	case creds.Username != "" || creds.Password != "":
		basic := base64.StdEncoding.EncodeToString([]byte(creds.Username + ":" + creds.Password))
		rt = authRoundTripper{next: rt, header: "Basic " + basic}
		secrets = append(secrets, basic, creds.Password)
	}
	address := strings.TrimRight(u.String(), "/")
	apiClient, err := api.NewClient(api.Config{Address: address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("Prometheus client for %s: %w", address, err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{api: promv1.NewAPI(apiClient), address: address, timeout: timeout, secrets: secrets}, nil
}

// Address is the Prometheus base URL the client queries.
func (c *Client) Address() string { return c.address }

// authRoundTripper sets the Authorization header on every request.
type authRoundTripper struct {
	next   http.RoundTripper
	header string
}

func (a authRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", a.header)
	return a.next.RoundTrip(req)
}

// Result is a query's outcome when Prometheus answered: one number, or no data.
type Result struct {
	// Value is the measurement; meaningful only when NoData is false.
	Value float64
	// NoData is true when there was nothing to measure: no series (no requests yet), or a
	// NaN or infinite value (such as 0/0 when no requests arrived in the window).
	NoData bool
	// Reason says why there is no data: ReasonNoSeries, ReasonNaN or ReasonInfinite.
	Reason string
	// Warnings are Prometheus' warnings about the answer, if any.
	Warnings []string
}

// Reasons for NoData.
const (
	ReasonNoSeries = "NoSeries"
	ReasonNaN      = "NaN"
	ReasonInfinite = "Infinite"
)

// ErrorReason classifies a QueryError.
type ErrorReason string

const (
	// ErrorUnreachable: no answer (connection, TLS, DNS, timeout, cancelled).
	ErrorUnreachable ErrorReason = "Unreachable"
	// ErrorUnauthorized: HTTP 401 or 403; check the credentials.
	ErrorUnauthorized ErrorReason = "Unauthorized"
	// ErrorBadResponse: an answer that is not Prometheus' API (wrong address or path, a
	// proxy's error page, a server error).
	ErrorBadResponse ErrorReason = "BadResponse"
	// ErrorQueryFailed: Prometheus rejected the query (syntax) or failed to evaluate it.
	ErrorQueryFailed ErrorReason = "QueryFailed"
	// ErrorUnusableResult: the query worked but did not yield one number (several series,
	// a range vector, a string).
	ErrorUnusableResult ErrorReason = "UnusableResult"
)

// QueryError is why a query produced no Result. Its message names the address and never
// holds credentials.
type QueryError struct {
	Reason  ErrorReason
	Address string
	Detail  string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("querying Prometheus at %s: %s", e.Address, e.Detail)
}

// Query evaluates query at time at (Prometheus' own now when at is zero) and reduces the
// answer to a Result. Errors are *QueryError.
func (c *Client) Query(ctx context.Context, query string, at time.Time) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	value, warnings, err := c.api.Query(ctx, query, at, promv1.WithTimeout(c.timeout))
	if err != nil {
		return Result{}, c.queryError(classify(err, c.timeout))
	}
	res, reason, detail := resultOf(value)
	if detail != "" {
		return Result{}, c.queryError(reason, detail)
	}
	if len(warnings) > 0 {
		res.Warnings = make([]string, len(warnings))
		for i, w := range warnings {
			res.Warnings[i] = c.scrub(w)
		}
	}
	return res, nil
}

func (c *Client) queryError(reason ErrorReason, detail string) *QueryError {
	return &QueryError{Reason: reason, Address: c.address, Detail: c.scrub(detail)}
}

// scrub removes credentials from text a server or the transport produced.
func (c *Client) scrub(s string) string {
	for _, secret := range c.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// maxDetail caps how much of a server's answer goes into an error.
const maxDetail = 256

// classify turns client_golang's and the transport's errors into a reason and a detail.
func classify(err error, timeout time.Duration) (ErrorReason, string) {
	var apiErr *promv1.Error
	if errors.As(err, &apiErr) {
		return classifyAPIError(apiErr)
	}
	var urlErr *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ErrorUnreachable, fmt.Sprintf("no answer in time (timeout %s)", timeout)
	case errors.As(err, &urlErr):
		// Its URL repeats the address and, after a GET fallback, the whole query.
		return ErrorUnreachable, urlErr.Err.Error()
	case errors.Is(err, context.Canceled):
		return ErrorUnreachable, "cancelled before an answer came"
	}
	// The answer's data did not decode.
	return ErrorBadResponse, "unexpected answer: " + err.Error() + "; is this the address of Prometheus' API?"
}

// apiErrorBody is Prometheus' error answer, which client_golang leaves in Detail for
// status codes it does not expect (Prometheus answers 503 to a query that timed out).
type apiErrorBody struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
}

func classifyAPIError(e *promv1.Error) (ErrorReason, string) {
	switch e.Type {
	case promv1.ErrBadData, promv1.ErrExec, promv1.ErrTimeout, promv1.ErrCanceled:
		return ErrorQueryFailed, fmt.Sprintf("query failed: %s: %s", e.Type, e.Msg)
	case promv1.ErrClient, promv1.ErrServer:
		status := httpStatus(e.Msg) // client_golang says "client error: 401"
		if status == "HTTP 401" || status == "HTTP 403" {
			return ErrorUnauthorized, status + ": the credentials were refused"
		}
		var body apiErrorBody
		if json.Unmarshal([]byte(e.Detail), &body) == nil && body.Status == "error" && body.ErrorType != "" {
			return ErrorQueryFailed, fmt.Sprintf("query failed: %s: %s", body.ErrorType, body.Error)
		}
		detail := strings.Join(strings.Fields(e.Detail), " ")
		if len(detail) > maxDetail {
			detail = strings.ToValidUTF8(detail[:maxDetail], "") + "…"
		}
		if detail != "" {
			status += ": " + detail
		}
		return ErrorBadResponse, "unexpected answer (" + status + "); is this the address of Prometheus' API?"
	}
	return ErrorBadResponse, "unexpected answer: " + e.Error() + "; is this the address of Prometheus' API?"
}

// httpStatus turns client_golang's "client error: 404" into "HTTP 404".
func httpStatus(msg string) string {
	if _, code, ok := strings.Cut(msg, ": "); ok {
		return "HTTP " + code
	}
	return msg
}

// maxListedSeries caps how many series an error about several of them lists.
const maxListedSeries = 3

// resultOf reduces a query's value to one number or no data; otherwise it returns a reason
// and detail for an error.
func resultOf(v model.Value) (Result, ErrorReason, string) {
	switch v := v.(type) {
	case *model.Scalar:
		return number(float64(v.Value)), "", ""
	case model.Vector:
		switch len(v) {
		case 0:
			return Result{NoData: true, Reason: ReasonNoSeries}, "", ""
		case 1:
			return number(float64(v[0].Value)), "", ""
		}
		labels := make([]string, len(v))
		for i, s := range v {
			labels[i] = s.Metric.String()
		}
		return Result{}, ErrorUnusableResult, fmt.Sprintf(
			"the query returned %d series, not one number: %s; aggregate them into one, for example with sum(...)",
			len(v), listSome(labels))
	case model.Matrix:
		return Result{}, ErrorUnusableResult, fmt.Sprintf(
			"the query returned a range vector (%d series), not one number; use an instant vector, for example sum(rate(metric[1m])) rather than metric[1m]",
			len(v))
	case *model.String:
		return Result{}, ErrorUnusableResult, "the query returned a string, not a number"
	case nil:
		return Result{}, ErrorBadResponse, "the answer holds no result"
	default:
		return Result{}, ErrorUnusableResult, fmt.Sprintf("the query returned a %s, not a number", v.Type())
	}
}

func number(f float64) Result {
	switch {
	case math.IsNaN(f):
		return Result{NoData: true, Reason: ReasonNaN}
	case math.IsInf(f, 0):
		return Result{NoData: true, Reason: ReasonInfinite}
	}
	return Result{Value: f}
}

// listSome returns the first few of items, sorted so messages are stable.
func listSome(items []string) string {
	sort.Strings(items)
	if len(items) > maxListedSeries {
		return strings.Join(items[:maxListedSeries], ", ") + fmt.Sprintf(" and %d more", len(items)-maxListedSeries)
	}
	return strings.Join(items, ", ")
}

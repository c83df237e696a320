package prom

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/common/model"
)

const (
	testToken    = "s3cr3t-t0ken"
	testPassword = "hunter2-passw0rd"
)

func TestResultOf(t *testing.T) {
	sample := func(v float64, labels ...string) *model.Sample {
		m := model.Metric{}
		for i := 0; i+1 < len(labels); i += 2 {
			m[model.LabelName(labels[i])] = model.LabelValue(labels[i+1])
		}
		return &model.Sample{Metric: m, Value: model.SampleValue(v)}
	}
	for _, tc := range []struct {
		name       string
		value      model.Value
		want       Result
		wantReason ErrorReason
		wantDetail string
	}{
		{name: "scalar", value: &model.Scalar{Value: 2}, want: Result{Value: 2}},
		{name: "one series", value: model.Vector{sample(0.75)}, want: Result{Value: 0.75}},
		{name: "zero is a value", value: model.Vector{sample(0)}, want: Result{Value: 0}},
		{name: "empty vector", value: model.Vector{}, want: Result{NoData: true, Reason: ReasonNoSeries}},
		{name: "NaN (0/0)", value: model.Vector{sample(math.NaN())}, want: Result{NoData: true, Reason: ReasonNaN}},
		{name: "NaN scalar", value: &model.Scalar{Value: model.SampleValue(math.NaN())}, want: Result{NoData: true, Reason: ReasonNaN}},
		{name: "+Inf", value: model.Vector{sample(math.Inf(1))}, want: Result{NoData: true, Reason: ReasonInfinite}},
		{name: "-Inf", value: &model.Scalar{Value: model.SampleValue(math.Inf(-1))}, want: Result{NoData: true, Reason: ReasonInfinite}},
		{
			name:       "several series",
			value:      model.Vector{sample(1, "w", "d"), sample(1, "w", "b"), sample(1, "w", "c"), sample(1, "w", "a")},
			wantReason: ErrorUnusableResult,
			wantDetail: `the query returned 4 series, not one number: {w="a"}, {w="b"}, {w="c"} and 1 more; aggregate them into one, for example with sum(...)`,
		},
		{name: "range vector", value: model.Matrix{{}}, wantReason: ErrorUnusableResult, wantDetail: "range vector (1 series)"},
		{name: "string", value: &model.String{Value: "x"}, wantReason: ErrorUnusableResult, wantDetail: "a string"},
		{name: "nothing", value: nil, wantReason: ErrorBadResponse, wantDetail: "holds no result"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, reason, detail := resultOf(tc.value)
			g.Expect(reason).To(Equal(tc.wantReason))
			if tc.wantDetail != "" {
				g.Expect(detail).To(ContainSubstring(tc.wantDetail))
				return
			}
			g.Expect(detail).To(BeEmpty())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestCredentialsFromSecret(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\n...")
	for _, tc := range []struct {
		name    string
		data    map[string][]byte
		want    Credentials
		wantErr []string
	}{
		{name: "none", data: nil, want: Credentials{}},
		{name: "bearer token", data: map[string][]byte{"token": []byte(testToken)}, want: Credentials{BearerToken: testToken}},
		{
			name: "basic auth and CA", data: map[string][]byte{"username": []byte("flagger"), "password": []byte(testPassword), "ca.crt": ca, "other": []byte("x")},
			want: Credentials{Username: "flagger", Password: testPassword, CA: ca},
		},
		{name: "username without password", data: map[string][]byte{"username": []byte("flagger")}, wantErr: []string{`key "username" is set but "password" is not`}},
		{name: "password without username", data: map[string][]byte{"password": []byte(testPassword)}, wantErr: []string{`key "password" is set but "username" is not`}},
		{
			name: "token and basic auth", data: map[string][]byte{"token": []byte(testToken), "username": []byte("u"), "password": []byte(testPassword)},
			wantErr: []string{`keys "token" and "username" are both set`},
		},
		{name: "empty values", data: map[string][]byte{"token": nil, "ca.crt": {}}, wantErr: []string{`key "token" is empty`, `key "ca.crt" is empty`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := CredentialsFromSecret(tc.data)
			if tc.wantErr != nil {
				for _, w := range tc.wantErr {
					g.Expect(err).To(MatchError(ContainSubstring(w)))
				}
				g.Expect(err.Error()).NotTo(Or(ContainSubstring(testToken), ContainSubstring(testPassword)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestCredentialsNeverPrint(t *testing.T) {
	g := NewWithT(t)
	cfg := Config{Address: "http://p:9090", Credentials: Credentials{Username: "flagger", Password: testPassword, CA: []byte("pem")}}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(format, cfg)
		g.Expect(out).NotTo(ContainSubstring(testPassword), format)
		g.Expect(out).To(ContainSubstring("basic auth, CA (redacted)"), format)
	}
	g.Expect(fmt.Sprint(Credentials{BearerToken: testToken})).To(Equal("bearer token (redacted)"))
	g.Expect(fmt.Sprint(Credentials{})).To(Equal("no credentials"))
}

func TestNewClientRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "empty address", cfg: Config{}, wantErr: "want http(s)://host:port"},
		{name: "no scheme", cfg: Config{Address: "prometheus:9090"}, wantErr: "want http(s)://host:port"},
		{name: "query", cfg: Config{Address: "http://p:9090/?x=1"}, wantErr: "without query or fragment"},
		{name: "credentials in the address", cfg: Config{Address: "http://flagger:" + testPassword + "@p:9090"}, wantErr: "holds credentials: put them in the credentials Secret"},
		{name: "token and basic auth", cfg: Config{Address: "http://p:9090", Credentials: Credentials{BearerToken: testToken, Username: "u", Password: testPassword}}, wantErr: "use one"},
		{name: "CA without a certificate", cfg: Config{Address: "https://p:9090", Credentials: Credentials{CA: []byte("not pem")}}, wantErr: `"ca.crt" holds no PEM certificate`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := NewClient(tc.cfg)
			g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
			g.Expect(err.Error()).NotTo(Or(ContainSubstring(testToken), ContainSubstring(testPassword)))
		})
	}
	c, err := NewClient(Config{Address: "https://prometheus.example:9090/prefix/"})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	NewWithT(t).Expect(c.Address()).To(Equal("https://prometheus.example:9090/prefix"))
}

// stub serves fixed answers to /api/v1/query and records what it was asked.
type stub struct {
	status      int
	contentType string
	body        string
	delay       time.Duration
	requests    []*http.Request
	forms       []map[string][]string
}

func (s *stub) start(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		s.requests = append(s.requests, r)
		s.forms = append(s.forms, r.Form)
		if s.delay > 0 {
			select {
			case <-time.After(s.delay):
			case <-r.Context().Done():
				return
			}
		}
		ct := s.contentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(s.status)
		_, _ = w.Write([]byte(strings.ReplaceAll(s.body, "$AUTH", r.Header.Get("Authorization"))))
	}))
	t.Cleanup(srv.Close)
	return srv
}

const okVector = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.5"]}]}}`

func TestQueryClassifiesAnswers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stub       stub
		timeout    time.Duration
		want       Result
		wantReason ErrorReason
		wantDetail string
	}{
		{name: "a value", stub: stub{status: 200, body: okVector}, want: Result{Value: 0.5}},
		{
			name: "warnings are kept",
			stub: stub{status: 200, body: `{"status":"success","warnings":["partial answer"],"data":{"resultType":"vector","result":[]}}`},
			want: Result{NoData: true, Reason: ReasonNoSeries, Warnings: []string{"partial answer"}},
		},
		{
			name:       "syntax error",
			stub:       stub{status: 400, body: `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}`},
			wantReason: ErrorQueryFailed, wantDetail: "query failed: bad_data: 1:5: parse error: unexpected end of input",
		},
		{
			name:       "evaluation timed out in Prometheus",
			stub:       stub{status: 503, body: `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`},
			wantReason: ErrorQueryFailed, wantDetail: "query failed: timeout: query timed out in expression evaluation",
		},
		{name: "401", stub: stub{status: 401, contentType: "text/plain", body: "Unauthorized"}, wantReason: ErrorUnauthorized, wantDetail: "HTTP 401: the credentials were refused"},
		{name: "403, also after the GET fallback", stub: stub{status: 403, body: "no"}, wantReason: ErrorUnauthorized, wantDetail: "HTTP 403"},
		{
			name:       "not Prometheus",
			stub:       stub{status: 404, contentType: "text/html", body: "<html>\n<body>Not   Found</body></html>"},
			wantReason: ErrorBadResponse, wantDetail: "unexpected answer (HTTP 404: <html> <body>Not Found</body></html>); is this the address of Prometheus' API?",
		},
		{name: "a proxy's error", stub: stub{status: 502, contentType: "text/plain", body: "bad gateway"}, wantReason: ErrorBadResponse, wantDetail: "HTTP 502: bad gateway"},
		{name: "garbled", stub: stub{status: 200, body: `{"status":"success","data":{"resultType":"vector","result":"x"}}`}, wantReason: ErrorBadResponse, wantDetail: "unexpected answer: "},
		{name: "not JSON", stub: stub{status: 200, contentType: "text/html", body: `<html>`}, wantReason: ErrorBadResponse},
		{
			name:       "a server that echoes the credentials is scrubbed",
			stub:       stub{status: 500, contentType: "text/plain", body: "cannot parse header $AUTH"},
			wantReason: ErrorBadResponse, wantDetail: "cannot parse header Basic [redacted]",
		},
		{name: "too slow", stub: stub{status: 200, body: okVector, delay: 5 * time.Second}, timeout: 200 * time.Millisecond, wantReason: ErrorUnreachable, wantDetail: "no answer in time (timeout 200ms)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			srv := tc.stub.start(t)
			c, err := NewClient(Config{Address: srv.URL, Timeout: tc.timeout, Credentials: Credentials{Username: "flagger", Password: testPassword}})
			g.Expect(err).NotTo(HaveOccurred())
			got, err := c.Query(context.Background(), "up", time.Time{})
			if tc.wantReason == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(got).To(Equal(tc.want))
				return
			}
			var qe *QueryError
			g.Expect(err).To(BeAssignableToTypeOf(qe))
			qe = err.(*QueryError)
			g.Expect(qe.Reason).To(Equal(tc.wantReason), "%v", err)
			g.Expect(qe.Address).To(Equal(srv.URL))
			g.Expect(err.Error()).To(HavePrefix("querying Prometheus at " + srv.URL + ": "))
			g.Expect(err.Error()).To(ContainSubstring(tc.wantDetail))
			basic := base64.StdEncoding.EncodeToString([]byte("flagger:" + testPassword))
			g.Expect(err.Error()).NotTo(Or(ContainSubstring(testPassword), ContainSubstring(basic)))
		})
	}
}

func TestQuerySendsCredentialsTimeAndTimeout(t *testing.T) {
	g := NewWithT(t)
	s := &stub{status: 200, body: okVector}
	srv := s.start(t)
	at := time.Unix(1_700_000_000, 500_000_000)

	bearer, err := NewClient(Config{Address: srv.URL, Credentials: Credentials{BearerToken: testToken}, Timeout: 3 * time.Second})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = bearer.Query(context.Background(), `sum(up)`, at)
	g.Expect(err).NotTo(HaveOccurred())
	basic, err := NewClient(Config{Address: srv.URL, Credentials: Credentials{Username: "flagger", Password: testPassword}})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = basic.Query(context.Background(), `sum(up)`, time.Time{})
	g.Expect(err).NotTo(HaveOccurred())
	none, err := NewClient(Config{Address: srv.URL})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = none.Query(context.Background(), `sum(up)`, time.Time{})
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(s.requests).To(HaveLen(3))
	g.Expect(s.requests[0].Header.Get("Authorization")).To(Equal("Bearer " + testToken))
	g.Expect(s.forms[0]).To(HaveKeyWithValue("query", []string{"sum(up)"}))
	g.Expect(s.forms[0]).To(HaveKeyWithValue("time", []string{"1700000000.5"}))
	g.Expect(s.forms[0]).To(HaveKeyWithValue("timeout", []string{"3s"}))
	user, pass, ok := s.requests[1].BasicAuth()
	g.Expect(ok).To(BeTrue())
	g.Expect([]string{user, pass}).To(Equal([]string{"flagger", testPassword}))
	g.Expect(s.forms[1]).NotTo(HaveKey("time"), "no time: Prometheus' own now")
	g.Expect(s.forms[1]).To(HaveKeyWithValue("timeout", []string{"10s"}))
	g.Expect(s.requests[2].Header.Get("Authorization")).To(BeEmpty())
}

func TestQueryUnreachableNamesTheAddressOnly(t *testing.T) {
	g := NewWithT(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // nothing listens there now
	c, err := NewClient(Config{Address: addr, Credentials: Credentials{BearerToken: testToken}})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.Query(context.Background(), `up`, time.Time{})
	g.Expect(err).To(MatchError(ContainSubstring("querying Prometheus at " + addr + ": dial tcp")))
	g.Expect(err).To(MatchError(ContainSubstring("connection refused")))
	g.Expect(err.(*QueryError).Reason).To(Equal(ErrorUnreachable))
	g.Expect(err.Error()).NotTo(ContainSubstring(testToken))
	g.Expect(strings.Count(err.Error(), addr)).To(Equal(1), "the address once, not the request's URL again: %v", err)
}

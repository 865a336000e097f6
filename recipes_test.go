package faceidsigner

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/signer"
)

// TestEveryRecipeIsAcceptedByTheEmulator signs one app request per API of
// SPEC.md section 8; the emulator verifies each signature with its recipe.
func TestEveryRecipeIsAcceptedByTheEmulator(t *testing.T) {
	cases := []struct {
		api, method, body, query string
	}{
		{"queryfacerecord", http.MethodPost, `{"orderNo":"` + testOrder + `"}`, ""},
		{"queryphotoinfo", http.MethodPost, `{"orderNo":"` + testOrder + `"}`, ""},
		{"getWillFaceResult", http.MethodPost, `{"orderNo":"` + testOrder + `","getFile":"2"}`, ""},
		{"getfaceid", http.MethodPost, `{"orderNo":"` + testOrder + `","userId":"user42","name":"张三","idNo":"110101199001011234","sourcePhotoType":"1"}`, ""},
		{"geth5faceid", http.MethodPost, `{"orderNo":"` + testOrder + `","userId":"user42","name":"张三","idNo":"110101199001011234","url":"https://app.example/done"}`, ""},
		{"getOcrResult", http.MethodGet, "", "order_no=" + testOrder + "&get_file=1"},
	}
	for _, c := range cases {
		t.Run(c.api, func(t *testing.T) {
			g := newGateway(t, func(cfg *Config) { cfg.API = c.api })
			req, _ := http.NewRequest(c.method, g.srv.URL+"/faceid/"+c.api+"?"+c.query, strings.NewReader(c.body))
			a := g.send(t, req)
			if a.status != 200 || fmt.Sprint(a.body["code"]) != "0" {
				t.Fatalf("answer %d %s", a.status, a.raw)
			}
			reqs := g.emu.Requests()
			if len(reqs) != 1 || reqs[0].API != c.api || reqs[0].Method != c.method {
				t.Fatalf("emulator saw %+v", reqs)
			}
			r, _ := signer.RecipeFor(c.api)
			if reqs[0].Path != r.Path {
				t.Fatalf("path %s, want %s", reqs[0].Path, r.Path)
			}
			if c.method == http.MethodGet {
				q, _ := url.ParseQuery(reqs[0].RawQuery)
				if q.Get("app_id") != testAppID || len(q.Get("nonce")) != 32 || q.Get("get_file") != "1" || len(q.Get("sign")) != 40 {
					t.Fatalf("query %s", reqs[0].RawQuery)
				}
			}
		})
	}
}

func TestRecipeRequiredFields(t *testing.T) {
	g := newGateway(t, func(cfg *Config) { cfg.API = "geth5faceid" })
	a := g.do(t, http.MethodPost, `{"orderNo":"`+testOrder+`","userId":"u1","name":"张三"}`, nil)
	if a.status != 400 || a.body["code"] != codeBadField || !strings.Contains(fmt.Sprint(a.body["msg"]), "idNo") {
		t.Fatalf("missing idNo: %d %s", a.status, a.raw)
	}
	g = newGateway(t, func(cfg *Config) { cfg.API = "getOcrResult" })
	a = g.do(t, http.MethodPost, `{"order_no":"x"}`, nil)
	if a.status != 405 || a.header.Get("Allow") != "GET" {
		t.Fatalf("POST to a GET API: %d %v", a.status, a.header)
	}
	if g.emu.QueryCalls() != 0 {
		t.Fatal("forwarded a bad request")
	}
}

func TestGetRecipeRetriesStaleTicket(t *testing.T) {
	g := newGateway(t, func(cfg *Config) { cfg.API = "getOcrResult" })
	get := func() answer {
		req, _ := http.NewRequest(http.MethodGet, g.srv.URL+"/ocr?order_no="+testOrder, nil)
		return g.send(t, req)
	}
	if a := get(); a.body["code"] != "0" {
		t.Fatalf("first: %s", a.raw)
	}
	g.emu.RevokeTokens(testAppID)
	if a := get(); a.body["code"] != "0" || g.emu.TokenCalls() != 2 {
		t.Fatalf("after revocation: %s (token calls %d)", a.raw, g.emu.TokenCalls())
	}
	_ = faceidtest.CodeOK
}

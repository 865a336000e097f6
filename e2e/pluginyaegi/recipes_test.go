package pluginyaegi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestEveryRecipeUnderYaegi signs one request per API with the interpreted
// plugin; the emulator verifies each signature with its recipe.
func TestEveryRecipeUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	cases := []struct{ api, method, target, body string }{
		{"queryphotoinfo", http.MethodPost, "/", `{"orderNo":"` + order + `"}`},
		{"getWillFaceResult", http.MethodPost, "/", `{"orderNo":"` + order + `"}`},
		{"getfaceid", http.MethodPost, "/", `{"orderNo":"` + order + `","userId":"u42","name":"张三","idNo":"110101199001011234"}`},
		{"geth5faceid", http.MethodPost, "/", `{"orderNo":"` + order + `","userId":"u42","name":"张三","idNo":"110101199001011234"}`},
		{"getOcrResult", http.MethodGet, "/?order_no=" + order + "&get_file=1", ""},
	}
	for _, c := range cases {
		emu := newEmulator(t)
		h := newHandler(t, p, proxyTo(emu, nil), config(emu, map[string]any{"api": c.api}), c.api)
		srv := httptest.NewServer(h)
		req, _ := http.NewRequest(c.method, srv.URL+c.target, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		reqs := emu.Requests()
		if resp.StatusCode != 200 || len(reqs) != 1 || reqs[0].Code != "0" {
			t.Errorf("%s: status %d, emulator %s", c.api, resp.StatusCode, fmt.Sprint(reqs))
		}
	}
}

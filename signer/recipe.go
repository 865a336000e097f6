package signer

import "sort"

// Recipe says how one vendor API is signed: where the request goes, what the
// gateway adds and which of the caller's fields are signed. Besides the
// caller's SignedFields, the values of AppIDField, VersionField, NonceField
// (when not empty) and the SIGN ticket are always signed.
type Recipe struct {
	// API is the name used in the plugin's `api` setting.
	API string
	// Method is the HTTP method the vendor expects (POST with a JSON body,
	// or GET with every field in the query string).
	Method string
	// Path is the vendor path.
	Path string
	// AppIDField, VersionField and NonceField name the fields the gateway
	// sets. NonceField is empty for APIs signed without a nonce.
	AppIDField   string
	VersionField string
	NonceField   string
	// SignField names the field that carries the signature.
	SignField string
	// OrderField names the caller's order number field. For POST APIs its
	// value is also sent as the query parameter `orderNo`.
	OrderField string
	// SignedFields are the caller-supplied fields whose values are signed,
	// in addition to the gateway's own. Each is required.
	SignedFields []string
	// RequiredFields are caller-supplied fields that must be present but
	// are not signed.
	RequiredFields []string
	// FileField names the caller's field that asks for files (photo, video,
	// images), "" when the API returns none. AlwaysFiles marks an API whose
	// answer always carries a file. Answers that may carry files can be
	// megabytes: the gateway streams them instead of holding them.
	FileField   string
	AlwaysFiles bool
	// PollsMedia marks the APIs whose photo and video (result.photo,
	// result.video) may lag the result, so that a missing file asked for
	// is worth querying again.
	PollsMedia bool
}

// SignValues returns the recipe's signature over the caller fields (looked up
// by name in fields) and the gateway values. It does not check that the
// fields are present; the caller validates first.
func (r *Recipe) SignValues(fields map[string]string, appID, version, ticket, nonce string) string {
	values := make([]string, 0, len(r.SignedFields)+4)
	for i := 0; i < len(r.SignedFields); i++ {
		values = append(values, fields[r.SignedFields[i]])
	}
	values = append(values, appID, version, ticket)
	if r.NonceField != "" {
		values = append(values, nonce)
	}
	return Sign(values...)
}

// recipes lists the APIs of SPEC.md sections 5 and 8.
var recipes = map[string]*Recipe{
	"queryfacerecord":   withMediaPolling(postRecipe("queryfacerecord", "/api/v2/base/queryfacerecord", "orderNo")),
	"queryphotoinfo":    withFilesAlways(postRecipe("queryphotoinfo", "/api/v2/base/queryphotoinfo", "orderNo")),
	"getWillFaceResult": withMediaPolling(postRecipe("getWillFaceResult", "/api/server/getWillFaceResult", "orderNo")),
	"getfaceid":         withRequired(postRecipe("getfaceid", "/api/server/getfaceid", "userId"), "orderNo"),
	"geth5faceid":       withoutNonce(postRecipe("geth5faceid", "/api/server/h5/geth5faceid", "orderNo", "name", "idNo", "userId")),
	"getOcrResult": {
		API: "getOcrResult", Method: "GET", Path: "/api/server/getOcrResult",
		AppIDField: "app_id", VersionField: "version", NonceField: "nonce", SignField: "sign",
		OrderField: "order_no", SignedFields: []string{"order_no"}, FileField: "get_file",
	},
}

func postRecipe(api, path string, signed ...string) *Recipe {
	return &Recipe{
		API: api, Method: "POST", Path: path,
		AppIDField: "appId", VersionField: "version", NonceField: "nonce", SignField: "sign",
		OrderField: "orderNo", SignedFields: signed,
	}
}

func withMediaPolling(r *Recipe) *Recipe {
	r.FileField = "getFile"
	r.PollsMedia = true
	return r
}

func withFilesAlways(r *Recipe) *Recipe {
	r.AlwaysFiles = true
	return r
}

func withRequired(r *Recipe, fields ...string) *Recipe {
	r.RequiredFields = fields
	return r
}

func withoutNonce(r *Recipe) *Recipe {
	r.NonceField = ""
	return r
}

// DefaultAPI is the recipe used when the `api` setting is empty.
const DefaultAPI = "queryfacerecord"

// RecipeFor returns the recipe of api, or nil and false for an unknown name.
// The returned recipe is shared: do not modify it.
func RecipeFor(api string) (*Recipe, bool) {
	r, ok := recipes[api]
	return r, ok
}

// APIs returns the names of every known recipe, sorted.
func APIs() []string {
	names := make([]string, 0, len(recipes))
	for name := range recipes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

package faceidsigner

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kycgate/faceidsigner/signer"
)

// Config is the plugin's dynamic configuration. Traefik matches keys to the
// field names case-insensitively (appId, secretFile, refreshInterval...).
// Durations are strings such as "20m", parsed in New.
type Config struct {
	// AppID is the FaceID WBappid. Required.
	AppID string
	// Secret is the app's secret. Exactly one of Secret and SecretFile.
	Secret string
	// SecretFile is a file holding the secret (trimmed), read in New. Prefer
	// it: Traefik's API shows plugin configuration unredacted.
	SecretFile string
	// Endpoint is the vendor base URL used for access_token and api_ticket.
	Endpoint string
	// Version is the vendor API version sent and signed.
	Version string
	// OAuthAppIDParam names the app id parameter of the access_token and
	// api_ticket calls: app_id (miniprogram-kyc, the default) or appId (one
	// kyc1 page spells it so; SPEC.md marks it unconfirmed).
	OAuthAppIDParam string
	// API selects the signing recipe (queryfacerecord by default).
	API string
	// RefreshInterval is the ticket age at which it is refreshed ahead of expiry.
	RefreshInterval string
	// Timeout bounds each call to the vendor's OAuth endpoints.
	Timeout string
	// MaxBodyBytes is the largest request body accepted from the app.
	MaxBodyBytes int64
	// LogLevel is one of debug, info, warn, error.
	LogLevel string

	// RetryCodes are vendor codes that mean "bad or expired ticket": the
	// plugin refreshes the ticket, re-signs and retries once.
	RetryCodes []string
	// ForcedRefreshInterval is the least time between two refreshes forced
	// by RetryCodes answers.
	ForcedRefreshInterval string
	// MaxInspectBytes is the largest vendor answer held back for inspection
	// (retry codes, missing media); larger answers stream through untouched.
	MaxInspectBytes int64
	// MediaRetries is how many times a code-0 answer that lacks the photo
	// or video asked for with getFile is queried again; 0 disables.
	MediaRetries int
	// MediaRetryDelay is the wait between those queries.
	MediaRetryDelay string

	// StatusPath, when set, is a path (on the routers using the middleware)
	// that answers the plugin's status as JSON, and StatusPath/metrics in
	// the Prometheus text format. Empty disables it.
	StatusPath string

	// RedisAddress (host:port) turns on the shared store that lets several
	// Traefik replicas use one token and ticket; empty means in-process only.
	RedisAddress      string
	RedisPassword     string
	RedisPasswordFile string
	RedisUsername     string
	RedisDB           int
	RedisKeyPrefix    string
	RedisTLS          bool
	// RedisTimeout bounds each Redis call.
	RedisTimeout string
	// RedisFailurePolicy says what to do when Redis fails and no valid
	// ticket is left: "local" fetches one from the vendor directly, "fail"
	// answers 503.
	RedisFailurePolicy string
	// RedisCheckInterval is how often a replica re-reads the shared record.
	RedisCheckInterval string
}

// Defaults.
const (
	DefaultEndpoint        = "https://miniprogram-kyc.tencentcloudapi.com"
	DefaultVersion         = "1.0.0"
	DefaultRefreshInterval = "20m"
	DefaultTimeout         = "5s"
	DefaultMaxBodyBytes    = 65536
	DefaultLogLevel        = "info"
	DefaultRetryCode       = "400101"
	DefaultForcedRefresh   = "10s"
	DefaultMaxInspectBytes = 65536
	DefaultMediaRetries    = 3
	DefaultMediaRetryDelay = "2s"
	maxMediaRetries        = 10
	DefaultRedisKeyPrefix  = "faceidsigner:"
	DefaultRedisTimeout    = "1s"
	DefaultRedisPolicy     = redisPolicyLocal
	DefaultRedisCheck      = "10s"
	redisPolicyLocal       = "local"
	redisPolicyFail        = "fail"
	maxMaxBodyBytes        = 10 << 20
)

// CreateConfig returns the default configuration.
func CreateConfig() *Config {
	return &Config{
		Endpoint:        DefaultEndpoint,
		Version:         DefaultVersion,
		API:             signer.DefaultAPI,
		RefreshInterval: DefaultRefreshInterval,
		Timeout:         DefaultTimeout,
		MaxBodyBytes:    DefaultMaxBodyBytes,
		LogLevel:        DefaultLogLevel,

		RetryCodes:            []string{DefaultRetryCode},
		ForcedRefreshInterval: DefaultForcedRefresh,
		MaxInspectBytes:       DefaultMaxInspectBytes,
		MediaRetries:          DefaultMediaRetries,
		MediaRetryDelay:       DefaultMediaRetryDelay,

		RedisKeyPrefix:     DefaultRedisKeyPrefix,
		RedisTimeout:       DefaultRedisTimeout,
		RedisFailurePolicy: DefaultRedisPolicy,
		RedisCheckInterval: DefaultRedisCheck,
	}
}

// settings is Config validated and parsed once, in New.
type settings struct {
	appID           string
	secret          string
	endpoint        string
	version         string
	oauthAppIDParam string
	recipe          *signer.Recipe
	signsOrderOnly  bool // the recipe signs only the order number of the caller's fields
	refreshInterval time.Duration
	timeout         time.Duration
	maxBodyBytes    int64
	logLevel        int

	retryCodes      [][]byte // each a JSON-free code, e.g. 400101
	forcedRefresh   time.Duration
	maxInspectBytes int
	mediaRetries    int
	mediaRetryDelay time.Duration

	redis *redisSettings // nil without redisAddress

	statusPath string
}

// redisSettings configure the shared store.
type redisSettings struct {
	address       string
	username      string
	password      string
	db            int
	keyPrefix     string
	tls           bool
	timeout       time.Duration
	fetchLocally  bool
	checkInterval time.Duration
}

var errConfig = errors.New("faceidsigner configuration")

func configError(field, problem string) error {
	return fmt.Errorf("%w: %s: %s", errConfig, field, problem)
}

// parseConfig validates every field and returns the parsed settings, or an
// error naming the field and what to do. It reads SecretFile; no network.
func parseConfig(cfg *Config) (*settings, error) {
	if cfg == nil {
		return nil, configError("config", "missing")
	}
	s := &settings{}
	s.appID = strings.TrimSpace(cfg.AppID)
	if s.appID == "" {
		return nil, configError("appId", "is required: set it to your FaceID WBappid")
	}
	if !signer.IsAlphanumeric(s.appID, 32) {
		return nil, configError("appId", "must be 1 to 32 letters or digits")
	}

	secret, err := readSecret(cfg.Secret, cfg.SecretFile)
	if err != nil {
		return nil, err
	}
	s.secret = secret

	endpoint, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	s.endpoint = endpoint

	s.version = strings.TrimSpace(cfg.Version)
	if s.version == "" || len(s.version) > 20 || strings.ContainsAny(s.version, "\"\\ ") {
		return nil, configError("version", "must be 1 to 20 characters without quotes, backslashes or spaces (the vendor uses 1.0.0)")
	}

	s.oauthAppIDParam = strings.TrimSpace(cfg.OAuthAppIDParam)
	if s.oauthAppIDParam != "" && s.oauthAppIDParam != "app_id" && s.oauthAppIDParam != "appId" {
		return nil, configError("oauthAppIdParam", "must be app_id (default) or appId")
	}

	api := strings.TrimSpace(cfg.API)
	if api == "" {
		api = signer.DefaultAPI
	}
	recipe, ok := signer.RecipeFor(api)
	if !ok {
		return nil, configError("api", fmt.Sprintf("unknown API %q; use one of %s", api, strings.Join(signer.APIs(), ", ")))
	}
	s.recipe = recipe
	s.signsOrderOnly = len(recipe.SignedFields) == 1 && recipe.SignedFields[0] == recipe.OrderField && len(recipe.RequiredFields) == 0

	// One assignment per statement: yaegi drops tuple assignments to fields.
	refreshInterval, err := parseDuration("refreshInterval", cfg.RefreshInterval, DefaultRefreshInterval, time.Second, 50*time.Minute)
	if err != nil {
		return nil, err
	}
	s.refreshInterval = refreshInterval
	timeout, err := parseDuration("timeout", cfg.Timeout, DefaultTimeout, 10*time.Millisecond, time.Minute)
	if err != nil {
		return nil, err
	}
	s.timeout = timeout

	s.maxBodyBytes = cfg.MaxBodyBytes
	if s.maxBodyBytes == 0 {
		s.maxBodyBytes = DefaultMaxBodyBytes
	}
	if s.maxBodyBytes < 0 || s.maxBodyBytes > maxMaxBodyBytes {
		return nil, configError("maxBodyBytes", fmt.Sprintf("must be between 1 and %d", maxMaxBodyBytes))
	}

	level, ok := logLevels[strings.ToLower(strings.TrimSpace(cfg.LogLevel))]
	if !ok && strings.TrimSpace(cfg.LogLevel) != "" {
		return nil, configError("logLevel", "must be one of debug, info, warn, error")
	}
	if !ok {
		level = logLevels[DefaultLogLevel]
	}
	s.logLevel = level

	if err := parseRetrySettings(cfg, s); err != nil {
		return nil, err
	}
	s.statusPath = strings.TrimRight(strings.TrimSpace(cfg.StatusPath), "/")
	if s.statusPath != "" && (!strings.HasPrefix(s.statusPath, "/") || strings.ContainsAny(s.statusPath, "?# ")) {
		return nil, configError("statusPath", "must be an absolute path such as /faceid/status")
	}
	redis, err := parseRedisSettings(cfg)
	if err != nil {
		return nil, err
	}
	s.redis = redis
	return s, nil
}

// parseRedisSettings reads the shared-store settings; nil without an address.
func parseRedisSettings(cfg *Config) (*redisSettings, error) {
	address := strings.TrimSpace(cfg.RedisAddress)
	if address == "" {
		if cfg.RedisPassword != "" || cfg.RedisPasswordFile != "" || cfg.RedisUsername != "" || cfg.RedisDB != 0 || cfg.RedisTLS {
			return nil, configError("redisAddress", "is required when other redis settings are set (an empty redisAddress means no shared store)")
		}
		return nil, nil
	}
	if _, port, err := net.SplitHostPort(address); err != nil || port == "" {
		return nil, configError("redisAddress", fmt.Sprintf("%q is not host:port", address))
	}
	r := &redisSettings{address: address, username: strings.TrimSpace(cfg.RedisUsername), db: cfg.RedisDB, tls: cfg.RedisTLS}
	if cfg.RedisPassword != "" || cfg.RedisPasswordFile != "" {
		password, err := readSecret(cfg.RedisPassword, cfg.RedisPasswordFile)
		if err != nil {
			return nil, configError("redisPassword", strings.TrimPrefix(err.Error(), errConfig.Error()+": "))
		}
		r.password = password
	}
	if r.db < 0 || r.db > 1000 {
		return nil, configError("redisDB", "must be between 0 and 1000")
	}
	if r.username != "" && r.password == "" {
		return nil, configError("redisUsername", "needs redisPassword or redisPasswordFile (Redis ACL users authenticate with a password)")
	}
	r.keyPrefix = cfg.RedisKeyPrefix
	if r.keyPrefix == "" {
		r.keyPrefix = DefaultRedisKeyPrefix
	}
	if len(r.keyPrefix) > 100 || strings.ContainsAny(r.keyPrefix, " \t\r\n") {
		return nil, configError("redisKeyPrefix", "must be at most 100 characters without spaces")
	}
	timeout, err := parseDuration("redisTimeout", cfg.RedisTimeout, DefaultRedisTimeout, time.Millisecond, 30*time.Second)
	if err != nil {
		return nil, err
	}
	r.timeout = timeout
	check, err := parseDuration("redisCheckInterval", cfg.RedisCheckInterval, DefaultRedisCheck, 10*time.Millisecond, 30*time.Second)
	if err != nil {
		return nil, err
	}
	r.checkInterval = check
	switch strings.ToLower(strings.TrimSpace(cfg.RedisFailurePolicy)) {
	case "", redisPolicyLocal:
		r.fetchLocally = true
	case redisPolicyFail:
		r.fetchLocally = false
	default:
		return nil, configError("redisFailurePolicy", "must be local (fetch a ticket from the vendor when Redis fails and none is left) or fail (answer 503)")
	}
	return r, nil
}

// resultCodes are vendor codes that report the verification itself; they
// must never trigger a ticket refresh.
var resultCodes = map[string]bool{"0": true, "66660011": true, "66660016": true, "66660017": true, "66660018": true, "400604": true}

// parseRetrySettings reads the settings of stale-ticket retries and
// late-media polling.
func parseRetrySettings(cfg *Config, s *settings) error {
	for i := 0; i < len(cfg.RetryCodes); i++ {
		code := strings.TrimSpace(cfg.RetryCodes[i])
		if code == "" {
			continue
		}
		if !signer.IsAlphanumeric(code, 16) {
			return configError("retryCodes", fmt.Sprintf("%q is not a vendor error code (letters or digits)", code))
		}
		if resultCodes[code] {
			return configError("retryCodes", fmt.Sprintf("%q is a verification result code (0, 66660011, 66660016, 66660017, 66660018, 400604), not a ticket problem: a new ticket cannot change it", code))
		}
		s.retryCodes = append(s.retryCodes, []byte(code))
	}
	forced, err := parseDuration("forcedRefreshInterval", cfg.ForcedRefreshInterval, DefaultForcedRefresh, time.Millisecond, time.Hour)
	if err != nil {
		return err
	}
	s.forcedRefresh = forced
	inspect := cfg.MaxInspectBytes
	if inspect == 0 {
		inspect = DefaultMaxInspectBytes
	}
	if inspect < 1024 || inspect > maxMaxBodyBytes {
		return configError("maxInspectBytes", fmt.Sprintf("must be between 1024 and %d", maxMaxBodyBytes))
	}
	s.maxInspectBytes = int(inspect)
	if cfg.MediaRetries < 0 || cfg.MediaRetries > maxMediaRetries {
		return configError("mediaRetries", fmt.Sprintf("must be between 0 and %d", maxMediaRetries))
	}
	s.mediaRetries = cfg.MediaRetries
	delay, err := parseDuration("mediaRetryDelay", cfg.MediaRetryDelay, DefaultMediaRetryDelay, 0, time.Minute)
	if err != nil {
		return err
	}
	s.mediaRetryDelay = delay
	return nil
}

func readSecret(inline, file string) (string, error) {
	inline = strings.TrimSpace(inline)
	file = strings.TrimSpace(file)
	if inline != "" && file != "" {
		return "", configError("secret", "set either secret or secretFile, not both")
	}
	if inline == "" && file == "" {
		return "", configError("secret", "is required: set secretFile (recommended) or secret")
	}
	if inline != "" {
		return inline, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", configError("secretFile", fmt.Sprintf("cannot read %q: check the path and that Traefik may read it", file))
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", configError("secretFile", fmt.Sprintf("%q is empty", file))
	}
	return secret, nil
}

func parseEndpoint(raw string) (string, error) {
	raw = strings.TrimRight(strings.TrimSpace(raw), "/")
	if raw == "" {
		raw = DefaultEndpoint
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", configError("endpoint", "must be an http(s) base URL such as "+DefaultEndpoint+", without query or credentials")
	}
	return raw, nil
}

func parseDuration(field, raw, def string, lo, hi time.Duration) (time.Duration, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		raw = def
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		return 0, configError(field, fmt.Sprintf("%q is not a duration; write it like %q", raw, def))
	}
	if d < lo || d > hi {
		return 0, configError(field, fmt.Sprintf("%s is out of range; use %s to %s", d, lo, hi))
	}
	return d, nil
}

// identity names the credentials a ticket belongs to, without revealing the
// secret: a new secret must never reuse the old ticket.
func (s *settings) identity() string {
	sum := sha256.Sum256([]byte(s.endpoint + "\n" + s.appID + "\n" + s.secret))
	return hex.EncodeToString(sum[:])
}

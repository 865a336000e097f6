package e2e

// Tests for examples/: each example is decoded by the Traefik v3.6 code that
// reads it in production (file provider, static-configuration loaders, Docker
// label decoder, Kubernetes CRD provider against a loopback API server), the
// resulting plugin configuration map is compared key by key and type by type,
// and that map is then decoded into the plugin's real Config exactly as
// Traefik's yaegi middleware builder does and handed to faceidsigner.New.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner"
	"github.com/mitchellh/mapstructure"
	"github.com/traefik/paerser/cli"
	"github.com/traefik/traefik/v3/cmd"
	tcli "github.com/traefik/traefik/v3/pkg/cli"
	"github.com/traefik/traefik/v3/pkg/config/dynamic"
	"github.com/traefik/traefik/v3/pkg/config/label"
	"github.com/traefik/traefik/v3/pkg/provider/file"
	"github.com/traefik/traefik/v3/pkg/provider/kubernetes/crd"
	traefikv1alpha1 "github.com/traefik/traefik/v3/pkg/provider/kubernetes/crd/traefikio/v1alpha1"
	"github.com/traefik/traefik/v3/pkg/safe"
	ttypes "github.com/traefik/traefik/v3/pkg/types"
	goyaml "gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The two literals every example keeps so that tests can point it at an
// emulator and a temporary secret with a plain string replacement.
const (
	exampleVendorURL  = "https://miniprogram-kyc.tencentcloudapi.com"
	exampleSecretPath = "/etc/traefik/faceid-secret"

	exampleAppID      = "IDAXXXXX"
	exampleModuleName = "github.com/kycgate/faceidsigner"
	examplePluginName = "faceidsigner"
	exampleRule       = "PathPrefix(`/faceid/queryfacerecord`)"
)

func examplePath(rel string) string {
	return filepath.Join("..", "examples", filepath.FromSlash(rel))
}

func readExample(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(examplePath(rel))
	if err != nil {
		t.Fatalf("read example: %v", err)
	}
	return string(data)
}

// swapLiterals does what tests that run an example against the emulator do:
// replace the vendor URL and the secret path. It fails when a literal is
// missing, and when anything still names the vendor afterwards (the URL
// literal must be the only thing to swap).
func swapLiterals(t *testing.T, rel, text, endpoint, secretFile string) string {
	t.Helper()
	for _, lit := range []string{exampleVendorURL, exampleSecretPath} {
		if !strings.Contains(text, lit) {
			t.Fatalf("%s does not contain %q, which tests substitute", rel, lit)
		}
	}
	text = strings.ReplaceAll(text, exampleVendorURL, endpoint)
	text = strings.ReplaceAll(text, exampleSecretPath, secretFile)
	if strings.Contains(text, "tencentcloudapi") {
		t.Fatalf("%s still names the vendor after replacing %q", rel, exampleVendorURL)
	}
	return text
}

// writeSecret writes a secret file the way an operator would (trailing newline).
func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "faceid-secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pluginConfAfterWatcher returns the faceidsigner configuration map of
// middleware mw the way Traefik's configuration watcher hands it on: after
// Configuration.DeepCopy, which copies plugin maps with deepCopyJSONValue and
// panics on any value type other than string, bool, int64, float64,
// json.Number, []any and map[string]any.
func pluginConfAfterWatcher(t *testing.T, conf *dynamic.Configuration, mw string) map[string]any {
	t.Helper()
	var copied *dynamic.Configuration
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Traefik's configuration DeepCopy panics on this plugin configuration: %v", r)
			}
		}()
		copied = conf.DeepCopy()
	}()
	if copied.HTTP == nil || copied.HTTP.Middlewares[mw] == nil {
		t.Fatalf("middleware %q missing; have %v", mw, middlewareNames(conf))
	}
	plugin := copied.HTTP.Middlewares[mw].Plugin
	if len(plugin) != 1 {
		t.Fatalf("middleware %q: want exactly one plugin, got %v", mw, plugin)
	}
	pc, ok := plugin[examplePluginName]
	if !ok {
		t.Fatalf("middleware %q: no %q plugin in %v", mw, examplePluginName, plugin)
	}
	return pc
}

func middlewareNames(conf *dynamic.Configuration) []string {
	var names []string
	if conf != nil && conf.HTTP != nil {
		for name := range conf.HTTP.Middlewares {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// assertPluginMap compares keys, values and Go types exactly.
func assertPluginMap(t *testing.T, got, want map[string]any) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			t.Errorf("plugin key %q missing, want %T(%#v)", k, w, w)
		case !wok:
			t.Errorf("unexpected plugin key %q = %T(%#v)", k, g, g)
		case !reflect.DeepEqual(g, w):
			t.Errorf("plugin key %q = %T(%#v), want %T(%#v)", k, g, g, w, w)
		}
	}
}

// decodeLikeTraefik reproduces yaegiMiddlewareBuilder.createConfig
// (pkg/plugins/middlewareyaegi.go, Traefik v3.6.12): CreateConfig, then
// mapstructure with StringToSliceHookFunc(",") and WeaklyTypedInput.
func decodeLikeTraefik(t *testing.T, raw map[string]any) *faceidsigner.Config {
	t.Helper()
	cfg := faceidsigner.CreateConfig()
	if len(raw) == 0 {
		return cfg
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.StringToSliceHookFunc(","),
		WeaklyTypedInput: true,
		Result:           cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(raw); err != nil {
		t.Fatalf("Traefik would refuse this plugin configuration: %v", err)
	}
	return cfg
}

// wantConfig is the Config every example should produce.
func wantConfig(endpoint, secret, secretFile string) faceidsigner.Config {
	c := *faceidsigner.CreateConfig()
	c.AppID = exampleAppID
	c.Secret = secret
	c.SecretFile = secretFile
	c.Endpoint = endpoint
	c.RefreshInterval = "20m"
	c.Timeout = "5s"
	c.MaxBodyBytes = 65536
	c.LogLevel = "info"
	return c
}

// checkConfigAndNew decodes raw like Traefik, compares it with want and
// builds the middleware with the plugin's real New.
func checkConfigAndNew(t *testing.T, raw map[string]any, want faceidsigner.Config, name string) {
	t.Helper()
	cfg := decodeLikeTraefik(t, raw)
	if !reflect.DeepEqual(*cfg, want) {
		t.Fatalf("decoded Config:\n got %+v\nwant %+v", *cfg, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	next := http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusNoContent) })
	h, err := faceidsigner.New(ctx, next, cfg, name)
	if err != nil {
		t.Fatalf("faceidsigner.New refuses the example: %v", err)
	}
	if h == nil {
		t.Fatal("faceidsigner.New returned a nil handler")
	}
}

func checkRouterAndService(t *testing.T, conf *dynamic.Configuration, router, middleware, service, endpoint string) {
	t.Helper()
	r := conf.HTTP.Routers[router]
	if r == nil {
		t.Fatalf("router %q missing", router)
	}
	if !reflect.DeepEqual(r.EntryPoints, []string{"faceid"}) || r.Rule != exampleRule ||
		!reflect.DeepEqual(r.Middlewares, []string{middleware}) || r.Service != service {
		t.Errorf("router %q = entryPoints %v rule %q middlewares %v service %q", router, r.EntryPoints, r.Rule, r.Middlewares, r.Service)
	}
	s := conf.HTTP.Services[service]
	if s == nil || s.LoadBalancer == nil {
		t.Fatalf("service %q missing or not a load balancer", service)
	}
	lb := s.LoadBalancer
	if len(lb.Servers) != 1 || lb.Servers[0].URL != endpoint {
		t.Errorf("service %q servers = %+v, want one with URL %q", service, lb.Servers, endpoint)
	}
	if lb.PassHostHeader == nil || *lb.PassHostHeader {
		t.Errorf("service %q passHostHeader is not false (nil or true): the vendor must see its own Host", service)
	}
}

// TestExampleFileProviderDynamic runs dynamic.yml and dynamic.toml through
// Traefik's file provider (Provide with watch off: template rendering, then
// paerser file.DecodeContent into dynamic.Configuration).
func TestExampleFileProviderDynamic(t *testing.T) {
	const endpoint = "http://127.0.0.1:18081"
	for _, rel := range []string{"file-provider/dynamic.yml", "file-provider/dynamic.toml"} {
		t.Run(filepath.Base(rel), func(t *testing.T) {
			secretFile := writeSecret(t, "file-provider-secret")
			text := swapLiterals(t, rel, readExample(t, rel), endpoint, secretFile)
			path := filepath.Join(t.TempDir(), filepath.Base(rel))
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}

			conf := provideFile(t, path)
			checkRouterAndService(t, conf, "faceid-queryfacerecord", "faceid-sign", "faceid-vendor", endpoint)

			// The file provider delivers every scalar as a string, in YAML
			// and in TOML alike, with the keys spelt as in the file.
			got := pluginConfAfterWatcher(t, conf, "faceid-sign")
			assertPluginMap(t, got, map[string]any{
				"appId":           exampleAppID,
				"secretFile":      secretFile,
				"endpoint":        endpoint,
				"refreshInterval": "20m",
				"timeout":         "5s",
				"maxBodyBytes":    "65536",
				"logLevel":        "info",
			})
			checkConfigAndNew(t, got, wantConfig(endpoint, "", secretFile), "faceid-sign@file")
		})
	}
}

func provideFile(t *testing.T, path string) *dynamic.Configuration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pool := safe.NewPool(ctx)
	defer func() {
		cancel()
		pool.Stop()
	}()
	ch := make(chan dynamic.Message, 1)
	p := &file.Provider{Filename: path, Watch: false}
	if err := p.Init(); err != nil {
		t.Fatal(err)
	}
	if err := p.Provide(ch, pool); err != nil {
		t.Fatalf("Traefik's file provider rejects %s: %v", filepath.Base(path), err)
	}
	select {
	case msg := <-ch:
		return msg.Configuration
	case <-time.After(10 * time.Second):
		t.Fatal("file provider sent no configuration")
		return nil
	}
}

// TestExampleFileProviderDynamicSecretFileIsRead shows the secretFile path is
// really read by New: the unsubstituted example names a file that does not
// exist here, and New must say so.
func TestExampleFileProviderDynamicSecretFileIsRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dynamic.yml")
	if err := os.WriteFile(path, []byte(readExample(t, "file-provider/dynamic.yml")), 0o600); err != nil {
		t.Fatal(err)
	}
	raw := pluginConfAfterWatcher(t, provideFile(t, path), "faceid-sign")
	if _, err := os.Stat(exampleSecretPath); err == nil {
		t.Skipf("%s exists on this machine", exampleSecretPath)
	}
	_, err := faceidsigner.New(context.Background(), http.NotFoundHandler(), decodeLikeTraefik(t, raw), "faceid-sign@file")
	if err == nil || !strings.Contains(err.Error(), "secretFile") {
		t.Fatalf("New with a missing secret file: err = %v, want a secretFile error", err)
	}
}

// TestExampleFileProviderStatic loads the static files with Traefik's own
// --configFile loader (paerser file.Decode into TraefikCmdConfiguration).
func TestExampleFileProviderStatic(t *testing.T) {
	cases := []struct {
		rel, dynamicFile string
		local            bool
	}{
		{"file-provider/static.yml", "/etc/traefik/dynamic.yml", false},
		{"file-provider/static.toml", "/etc/traefik/dynamic.toml", false},
		{"file-provider/static-local.yml", "/etc/traefik/dynamic.yml", true},
	}
	for _, tc := range cases {
		t.Run(filepath.Base(tc.rel), func(t *testing.T) {
			conf := cmd.NewTraefikConfiguration()
			loader := &tcli.FileLoader{}
			loaded, err := loader.Load([]string{"--configFile=" + examplePath(tc.rel)}, &cli.Command{Configuration: conf})
			if err != nil || !loaded {
				t.Fatalf("Traefik's file loader: loaded=%v err=%v", loaded, err)
			}
			checkStatic(t, conf, tc.local)
			if conf.Providers.File == nil || conf.Providers.File.Filename != tc.dynamicFile {
				t.Errorf("providers.file = %+v, want filename %q", conf.Providers.File, tc.dynamicFile)
			}
		})
	}
}

func checkStatic(t *testing.T, conf *cmd.TraefikCmdConfiguration, local bool) {
	t.Helper()
	ep := conf.EntryPoints["faceid"]
	if ep == nil || ep.Address != ":8081" {
		t.Errorf("entryPoints.faceid = %+v, want address :8081", ep)
	}
	if conf.Experimental == nil {
		t.Fatal("experimental section missing")
	}
	if local {
		d, ok := conf.Experimental.LocalPlugins[examplePluginName]
		if !ok || d.ModuleName != exampleModuleName || len(conf.Experimental.Plugins) != 0 {
			t.Errorf("experimental.localPlugins = %+v plugins = %+v", conf.Experimental.LocalPlugins, conf.Experimental.Plugins)
		}
		return
	}
	d, ok := conf.Experimental.Plugins[examplePluginName]
	if !ok || d.ModuleName != exampleModuleName || d.Version != "v0.1.0" || len(conf.Experimental.LocalPlugins) != 0 {
		t.Errorf("experimental.plugins = %+v localPlugins = %+v", conf.Experimental.Plugins, conf.Experimental.LocalPlugins)
	}
	if conf.Experimental.AbortOnPluginFailure {
		t.Error("abortOnPluginFailure is meant to stay commented out in the example")
	}
}

// composeFile is the part of docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]struct {
		Command []string `yaml:"command"`
		Labels  []string `yaml:"labels"`
		Secrets []struct {
			Source string `yaml:"source"`
			Target string `yaml:"target"`
		} `yaml:"secrets"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// TestExampleDockerLabels decodes the Traefik service's labels with
// label.DecodeConfiguration (what the Docker provider calls) and its command
// with Traefik's flag loader.
func TestExampleDockerLabels(t *testing.T) {
	const rel = "docker-compose/docker-compose.yml"
	const endpoint = "http://127.0.0.1:18082"
	secretFile := writeSecret(t, "docker-secret")
	text := swapLiterals(t, rel, readExample(t, rel), endpoint, secretFile)

	var compose composeFile
	if err := goyaml.Unmarshal([]byte(text), &compose); err != nil {
		t.Fatalf("parse %s: %v", rel, err)
	}
	svc, ok := compose.Services["traefik"]
	if !ok {
		t.Fatalf("%s: no traefik service", rel)
	}

	// Docker keeps labels as key=value split at the first "=".
	labels := map[string]string{}
	for _, l := range svc.Labels {
		if strings.Contains(l, "$") {
			t.Errorf("label %q contains $, which Compose would interpolate", l)
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("label %q has no =", l)
		}
		labels[k] = v
	}
	if labels["traefik.enable"] != "true" {
		t.Error("traefik.enable=true is needed with exposedbydefault=false")
	}

	conf, err := label.DecodeConfiguration(labels)
	if err != nil {
		t.Fatalf("Traefik's label decoder rejects the labels: %v", err)
	}
	checkRouterAndService(t, conf, "faceid-queryfacerecord", "faceid-sign", "faceid-vendor", endpoint)

	// Labels deliver every value as a string, and the key keeps the case
	// written in the label.
	got := pluginConfAfterWatcher(t, conf, "faceid-sign")
	assertPluginMap(t, got, map[string]any{
		"appId":           exampleAppID,
		"secretFile":      secretFile,
		"endpoint":        endpoint,
		"refreshInterval": "20m",
		"timeout":         "5s",
		"maxBodyBytes":    "65536",
		"logLevel":        "info",
	})
	checkConfigAndNew(t, got, wantConfig(endpoint, "", secretFile), "faceid-sign@docker")

	// The Docker secret is mounted where secretFile points.
	if len(svc.Secrets) != 1 || svc.Secrets[0].Target != secretFile || svc.Secrets[0].Source != "faceid-secret" {
		t.Errorf("traefik secrets = %+v, want faceid-secret mounted at the secretFile path", svc.Secrets)
	}
	if compose.Secrets["faceid-secret"].File == "" {
		t.Error("top-level secret faceid-secret has no file")
	}

	// The command is Traefik's static configuration, decoded by its flag loader.
	static := cmd.NewTraefikConfiguration()
	loaded, err := (&tcli.FlagLoader{}).Load(svc.Command, &cli.Command{Configuration: static})
	if err != nil || !loaded {
		t.Fatalf("Traefik's flag loader: loaded=%v err=%v", loaded, err)
	}
	checkStatic(t, static, false)
	if static.Providers.Docker == nil || static.Providers.Docker.ExposedByDefault {
		t.Errorf("providers.docker = %+v, want enabled with exposedByDefault=false", static.Providers.Docker)
	}
}

// TestExampleKubernetesCRD runs Traefik's Kubernetes CRD provider against a
// loopback API server serving the example manifests and the Secret, so the
// urn:k8s:secret substitution, the Plugin JSON conversion and the
// IngressRoute/ExternalName handling are Traefik's own code.
func TestExampleKubernetesCRD(t *testing.T) {
	const secretValue = "k8s-secret-value\n" // as `kubectl create secret --from-file` stores a file ending in a newline

	t.Run("urn secret", func(t *testing.T) {
		objs := manifestObjects(t, "kubernetes/middleware.yml", "kubernetes/ingressroute.yml")
		objs = append(objs, kubeSecret(t, secretValue))
		conf := provideCRD(t, objs)
		checkIngressRoute(t, conf)

		// The provider JSON-decodes spec.plugin: numbers become float64, and
		// urn:k8s:secret:<name>:<key> becomes the Secret's bytes, untrimmed.
		got := pluginConfAfterWatcher(t, conf, "traefik-faceid-sign")
		assertPluginMap(t, got, map[string]any{
			"appId":           exampleAppID,
			"secret":          secretValue,
			"endpoint":        exampleVendorURL,
			"refreshInterval": "20m",
			"timeout":         "5s",
			"maxBodyBytes":    float64(65536),
			"logLevel":        "info",
		})
		checkConfigAndNew(t, got, wantConfig(exampleVendorURL, secretValue, ""), "traefik-faceid-sign@kubernetescrd")
	})

	t.Run("secretFile", func(t *testing.T) {
		const rel = "kubernetes/middleware-secretfile.yml"
		secretFile := writeSecret(t, "mounted-secret")
		text := swapLiterals(t, rel, readExample(t, rel), "http://127.0.0.1:18083", secretFile)
		objs := append(decodeManifests(t, rel, text), manifestObjects(t, "kubernetes/ingressroute.yml")...)
		conf := provideCRD(t, objs)
		checkIngressRoute(t, conf)

		got := pluginConfAfterWatcher(t, conf, "traefik-faceid-sign")
		assertPluginMap(t, got, map[string]any{
			"appId":           exampleAppID,
			"secretFile":      secretFile,
			"endpoint":        "http://127.0.0.1:18083",
			"refreshInterval": "20m",
			"timeout":         "5s",
			"maxBodyBytes":    float64(65536),
			"logLevel":        "info",
		})
		checkConfigAndNew(t, got, wantConfig("http://127.0.0.1:18083", "", secretFile), "traefik-faceid-sign@kubernetescrd")
	})
}

// TestExampleKubernetesSecretVolume checks that both ways of mounting the
// Secret put key "secret" of faceid-credentials at the secretFile path.
func TestExampleKubernetesSecretVolume(t *testing.T) {
	var patch appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(readExample(t, "kubernetes/traefik-secret-volume.yml")), &patch); err != nil {
		t.Fatalf("traefik-secret-volume.yml is not a Deployment patch: %v", err)
	}
	pod := patch.Spec.Template.Spec
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "traefik" {
		t.Fatalf("containers = %+v, want the traefik container", pod.Containers)
	}
	checkSecretMount(t, "traefik-secret-volume.yml", pod.Volumes, pod.Containers[0].VolumeMounts)

	var values struct {
		Experimental struct {
			Plugins map[string]struct {
				ModuleName string `json:"moduleName"`
				Version    string `json:"version"`
			} `json:"plugins"`
		} `json:"experimental"`
		Providers struct {
			KubernetesCRD struct {
				AllowExternalNameServices bool `json:"allowExternalNameServices"`
			} `json:"kubernetesCRD"`
		} `json:"providers"`
		Ports map[string]struct {
			Port int `json:"port"`
		} `json:"ports"`
		Deployment struct {
			AdditionalVolumes []corev1.Volume `json:"additionalVolumes"`
		} `json:"deployment"`
		AdditionalVolumeMounts []corev1.VolumeMount `json:"additionalVolumeMounts"`
	}
	if err := yaml.Unmarshal([]byte(readExample(t, "kubernetes/helm-values.yml")), &values); err != nil {
		t.Fatalf("helm-values.yml: %v", err)
	}
	if p := values.Experimental.Plugins[examplePluginName]; p.ModuleName != exampleModuleName || p.Version != "v0.1.0" {
		t.Errorf("helm experimental.plugins = %+v", values.Experimental.Plugins)
	}
	if !values.Providers.KubernetesCRD.AllowExternalNameServices {
		t.Error("helm values must allow ExternalName services for ingressroute.yml")
	}
	if values.Ports["faceid"].Port != 8081 {
		t.Errorf("helm ports.faceid = %+v", values.Ports["faceid"])
	}
	checkSecretMount(t, "helm-values.yml", values.Deployment.AdditionalVolumes, values.AdditionalVolumeMounts)
}

func checkSecretMount(t *testing.T, rel string, volumes []corev1.Volume, mounts []corev1.VolumeMount) {
	t.Helper()
	if len(volumes) != 1 || volumes[0].Secret == nil || volumes[0].Secret.SecretName != "faceid-credentials" {
		t.Fatalf("%s: volumes = %+v, want the faceid-credentials Secret", rel, volumes)
	}
	if len(mounts) != 1 {
		t.Fatalf("%s: volumeMounts = %+v", rel, mounts)
	}
	m := mounts[0]
	if m.Name != volumes[0].Name || m.MountPath != exampleSecretPath || m.SubPath != "secret" || !m.ReadOnly {
		t.Errorf("%s: volumeMount = %+v, want key secret at %s, read-only", rel, m, exampleSecretPath)
	}
}

func checkIngressRoute(t *testing.T, conf *dynamic.Configuration) {
	t.Helper()
	var routerName string
	for name := range conf.HTTP.Routers {
		if strings.HasPrefix(name, "traefik-faceid-queryfacerecord-") {
			routerName = name
		}
	}
	if routerName == "" {
		t.Fatalf("no router from the IngressRoute; routers: %v", conf.HTTP.Routers)
	}
	// Middleware references are prefixed with the namespace; the single
	// ExternalName Service on port 443 becomes an https URL with the port.
	checkRouterAndService(t, conf, routerName, "traefik-faceid-sign", conf.HTTP.Routers[routerName].Service, exampleVendorURL+":443")
}

// kubeObject is one object served by the loopback API server.
type kubeObject struct {
	resource string // e.g. "traefik.io/v1alpha1/middlewares", "v1/services"
	json     json.RawMessage
}

func manifestObjects(t *testing.T, rels ...string) []kubeObject {
	t.Helper()
	var objs []kubeObject
	for _, rel := range rels {
		objs = append(objs, decodeManifests(t, rel, readExample(t, rel))...)
	}
	return objs
}

// decodeManifests parses each YAML document strictly into its typed object
// (as the API server would validate it) and keeps its JSON form.
func decodeManifests(t *testing.T, rel, text string) []kubeObject {
	t.Helper()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	var objs []kubeObject
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		var obj any
		var resource string
		switch meta.APIVersion + "/" + meta.Kind {
		case "traefik.io/v1alpha1/Middleware":
			obj, resource = &traefikv1alpha1.Middleware{}, "traefik.io/v1alpha1/middlewares"
		case "traefik.io/v1alpha1/IngressRoute":
			obj, resource = &traefikv1alpha1.IngressRoute{}, "traefik.io/v1alpha1/ingressroutes"
		case "v1/Service":
			obj, resource = &corev1.Service{}, "v1/services"
		default:
			t.Fatalf("%s: unexpected %s %s", rel, meta.APIVersion, meta.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s: %s does not match Traefik's/Kubernetes' type: %v", rel, meta.Kind, err)
		}
		if m, ok := obj.(*traefikv1alpha1.Middleware); ok {
			checkMiddlewareSpec(t, rel, m)
		}
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, kubeObject{resource: resource, json: data})
	}
	if len(objs) == 0 {
		t.Fatalf("%s: no objects", rel)
	}
	return objs
}

// checkMiddlewareSpec checks the typed Middleware: one plugin, nothing else,
// its configuration kept as raw JSON (apiextensionsv1.JSON).
func checkMiddlewareSpec(t *testing.T, rel string, m *traefikv1alpha1.Middleware) {
	t.Helper()
	if m.Name != "faceid-sign" || m.Namespace != "traefik" {
		t.Errorf("%s: Middleware %s/%s, want traefik/faceid-sign", rel, m.Namespace, m.Name)
	}
	spec, err := json.Marshal(m.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(spec, &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != 1 || fields["plugin"] == nil || len(m.Spec.Plugin) != 1 {
		t.Errorf("%s: Middleware spec = %s, want only plugin.%s", rel, spec, examplePluginName)
	}
	raw, ok := m.Spec.Plugin[examplePluginName]
	if !ok || !json.Valid(raw.Raw) {
		t.Errorf("%s: spec.plugin.%s = %q", rel, examplePluginName, raw.Raw)
	}
}

// kubeSecret is faceid-credentials as the API server stores it after
// `kubectl create secret generic faceid-credentials --from-file=secret=...`.
func kubeSecret(t *testing.T, value string) kubeObject {
	t.Helper()
	s := corev1.Secret{Data: map[string][]byte{"secret": []byte(value)}}
	s.APIVersion = "v1"
	s.Kind = "Secret"
	s.Name = "faceid-credentials"
	s.Namespace = "traefik"
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return kubeObject{resource: "v1/secrets", json: data}
}

// provideCRD starts Traefik's CRD provider against a loopback API server
// serving objs in namespace traefik, and returns the first configuration
// holding the faceid-sign middleware.
func provideCRD(t *testing.T, objs []kubeObject) *dynamic.Configuration {
	t.Helper()
	// Make the provider build an external client from Endpoint and Token.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	t.Setenv("KUBECONFIG", "")

	api := newFakeKubeAPI(objs)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	t.Cleanup(api.stop)

	ctx, cancel := context.WithCancel(context.Background())
	pool := safe.NewPool(ctx)
	t.Cleanup(func() {
		cancel()
		pool.Stop()
	})

	p := &crd.Provider{
		Endpoint:                     srv.URL,
		Token:                        ttypes.FileOrContent("test-token"),
		Namespaces:                   []string{"traefik"},
		AllowExternalNameServices:    true,
		DisableClusterScopeResources: true,
	}
	if err := p.Init(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan dynamic.Message, 10)
	if err := p.Provide(ch, pool); err != nil {
		t.Fatalf("CRD provider: %v", err)
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case msg := <-ch:
			c := msg.Configuration
			if c != nil && c.HTTP != nil && c.HTTP.Middlewares["traefik-faceid-sign"] != nil {
				return c
			}
		case <-deadline:
			t.Fatalf("CRD provider sent no configuration with the middleware; API requests: %v", api.seen())
			return nil
		}
	}
}

// fakeKubeAPI answers list and watch requests for namespaced resources, as
// a Kubernetes API server with a fixed set of objects: lists return the
// objects, watches stay open with no events.
type fakeKubeAPI struct {
	objects  map[string][]json.RawMessage
	stopping chan struct{}
	requests chan string
}

func newFakeKubeAPI(objs []kubeObject) *fakeKubeAPI {
	a := &fakeKubeAPI{
		objects:  map[string][]json.RawMessage{},
		stopping: make(chan struct{}),
		requests: make(chan string, 1000),
	}
	for _, o := range objs {
		a.objects[o.resource] = append(a.objects[o.resource], o.json)
	}
	return a
}

func (a *fakeKubeAPI) stop() { close(a.stopping) }

func (a *fakeKubeAPI) seen() []string {
	var out []string
	for {
		select {
		case r := <-a.requests:
			out = append(out, r)
		default:
			return out
		}
	}
}

func (a *fakeKubeAPI) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	select {
	case a.requests <- req.Method + " " + req.URL.String():
	default:
	}
	if req.Method != http.MethodGet {
		http.Error(rw, "read-only fake API", http.StatusMethodNotAllowed)
		return
	}
	// /api/v1/namespaces/<ns>/<resource> or /apis/<group>/<version>/namespaces/<ns>/<resource>
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	var gv string
	switch {
	case len(parts) == 5 && parts[0] == "api" && parts[2] == "namespaces":
		gv = parts[1]
		parts = parts[2:]
	case len(parts) == 6 && parts[0] == "apis" && parts[3] == "namespaces":
		gv = parts[1] + "/" + parts[2]
		parts = parts[3:]
	default:
		http.Error(rw, "not found", http.StatusNotFound)
		return
	}
	if parts[1] != "traefik" {
		http.Error(rw, "namespace not served", http.StatusNotFound)
		return
	}
	resource := gv + "/" + parts[2]

	rw.Header().Set("Content-Type", "application/json")
	if w := req.URL.Query().Get("watch"); w == "true" || w == "1" {
		rw.WriteHeader(http.StatusOK)
		if f, ok := rw.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-req.Context().Done():
		case <-a.stopping:
		}
		return
	}
	items := a.objects[resource]
	if items == nil {
		items = []json.RawMessage{}
	}
	list := map[string]any{
		"apiVersion": gv,
		"metadata":   map[string]any{"resourceVersion": "1"},
		"items":      items,
	}
	if err := json.NewEncoder(rw).Encode(list); err != nil {
		panic(fmt.Sprintf("fake kube API: %v", err))
	}
}

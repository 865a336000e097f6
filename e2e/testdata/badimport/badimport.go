// Package badimport is a yaegihost test fixture: it imports a module that is
// required in go.mod but not vendored, so yaegi (which ignores go.mod and
// only looks under vendor/ and GOPATH/src) fails to import it.
package badimport

import (
	"context"
	"net/http"

	"github.com/kycgate/notvendored/helper"
)

// Config is empty.
type Config struct{}

// CreateConfig returns the default configuration.
func CreateConfig() *Config { return &Config{} }

// New never gets called: the import fails first.
func New(_ context.Context, next http.Handler, _ *Config, _ string) (http.Handler, error) {
	helper.Touch()
	return next, nil
}

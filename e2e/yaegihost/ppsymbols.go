package yaegihost

import (
	"encoding/json"
	"reflect"
)

// pp mirrors Traefik's plugins.PP, the interface of a provider plugin.
// Traefik registers it (with its yaegi wrapper _PP) in every plugin
// interpreter under the import path below; Load does the same so that the
// interpreter's symbol table matches Traefik's.
type pp interface {
	Init() error
	Provide(cfgChan chan<- json.Marshaler) error
	Stop() error
}

type wrapPP struct {
	IValue   any
	WInit    func() error
	WProvide func(cfgChan chan<- json.Marshaler) error
	WStop    func() error
}

func (p wrapPP) Init() error                                 { return p.WInit() }
func (p wrapPP) Provide(cfgChan chan<- json.Marshaler) error { return p.WProvide(cfgChan) }
func (p wrapPP) Stop() error                                 { return p.WStop() }

func ppSymbols() map[string]map[string]reflect.Value {
	return map[string]map[string]reflect.Value{
		"github.com/traefik/traefik/v3/pkg/plugins/plugins": {
			"PP":  reflect.ValueOf((*pp)(nil)),
			"_PP": reflect.ValueOf((*wrapPP)(nil)),
		},
	}
}

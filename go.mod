module github.com/kycgate/faceidsigner

go 1.24

require (
	github.com/google/uuid v1.6.0
	github.com/patrickmn/go-cache v2.1.0+incompatible
)

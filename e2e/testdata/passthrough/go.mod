module github.com/kycgate/passthrough

go 1.24

module github.com/kycgate/badimport

go 1.24

require github.com/kycgate/notvendored v1.0.0

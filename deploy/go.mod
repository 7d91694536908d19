module github.com/cosign-dev/cosign/deploy

go 1.26.8

replace github.com/cosign-dev/cosign => ../

require (
	github.com/cosign-dev/cosign v0.0.0-00010101000000-000000000000 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	k8s.io/api v0.37.2 // indirect
	k8s.io/apimachinery v0.37.2 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)

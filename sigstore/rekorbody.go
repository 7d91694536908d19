package sigstore

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// Transparency-log entry bodies.
//
// sigstore-go parses each Rekor v1 entry body of a bundle with rekor's
// types, and rekor verifies signatures while it parses: a hashedrekord
// body's signature with the key or certificate in the body, every
// signature of a dsse body against every verifier in it. All of that
// happens before anything checks that the trusted log signed the entry, so
// the body's keys are the attacker's to choose: a dsse body with a few
// hundred copies of one verifier and as many signatures costs a hundred
// thousand signature checks. So before sigstore-go sees a keyless
// signature, each of its entry bodies must be in the form the log writes
// for one signature (one signature and one verifier; no proposed content),
// and the certificate it names must be the signature's own, which
// sigstore-go would require later anyway. This bounds the input; trust is
// still sigstore-go's to decide.
const (
	// maxTlogEntries is the most log entries a bundle carries; cosign
	// writes one.
	maxTlogEntries = 4
	// maxRekorBodySize bounds one canonical entry body; a logged
	// hashedrekord or dsse body is 1 to 3 KiB.
	maxRekorBodySize = 32 << 10
)

// rekorBodySpecs are the entry kinds and versions sigstore-go verifies
// keyless signatures with, and where each names the signer.
type rekorSpec struct {
	Signature *struct {
		PublicKey *struct {
			Content string `json:"content"`
		} `json:"publicKey"`
	} `json:"signature"`
	Signatures []struct {
		Verifier string `json:"verifier"`
	} `json:"signatures"`
	ProposedContent json.RawMessage `json:"proposedContent"`
	Content         *struct {
		Envelope *struct {
			Signatures []struct {
				PublicKey string `json:"publicKey"`
			} `json:"signatures"`
		} `json:"envelope"`
	} `json:"content"`
}

// checkRekorBody checks a canonical Rekor entry body for a keyless
// signature whose leaf certificate is leaf (DER).
func checkRekorBody(body, leaf []byte) error {
	if len(body) == 0 || len(body) > maxRekorBodySize {
		return fmt.Errorf("entry body of %d bytes, want 1 to %d", len(body), maxRekorBodySize)
	}
	if err := checkJSON(body); err != nil {
		return fmt.Errorf("entry body: %w", err)
	}
	var e struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Spec       json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("entry body: %w", err)
	}
	if e.Kind == "hashedrekord" && e.APIVersion == "0.0.2" {
		// Rekor v2: sigstore-go reads it with protojson, verifying
		// nothing while it parses.
		return nil
	}
	var spec rekorSpec
	if err := json.Unmarshal(e.Spec, &spec); err != nil {
		return fmt.Errorf("entry body spec: %w", err)
	}
	var verifier string
	switch e.Kind + "/" + e.APIVersion {
	case "hashedrekord/0.0.1":
		if spec.Signature == nil || spec.Signature.PublicKey == nil {
			return errors.New("hashedrekord entry without signature.publicKey")
		}
		verifier = spec.Signature.PublicKey.Content
	case "dsse/0.0.1":
		if len(spec.ProposedContent) > 0 {
			return errors.New("dsse entry with proposedContent: the log writes none")
		}
		if len(spec.Signatures) != 1 {
			return fmt.Errorf("dsse entry with %d signatures, want 1", len(spec.Signatures))
		}
		verifier = spec.Signatures[0].Verifier
	case "intoto/0.0.2":
		if spec.Content == nil || spec.Content.Envelope == nil || len(spec.Content.Envelope.Signatures) != 1 {
			return errors.New("intoto entry without exactly one envelope signature")
		}
		verifier = spec.Content.Envelope.Signatures[0].PublicKey
	default:
		return fmt.Errorf("entry of kind %q, apiVersion %q: only hashedrekord 0.0.1/0.0.2, dsse 0.0.1 and intoto 0.0.2 are verified", e.Kind, e.APIVersion)
	}
	pemText, err := base64.StdEncoding.DecodeString(verifier)
	if err != nil {
		return fmt.Errorf("entry's verifier: %w", err)
	}
	block, rest := pem.Decode(pemText)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) > 0 {
		return errors.New("entry's verifier is not one PEM certificate")
	}
	if !bytes.Equal(block.Bytes, leaf) {
		return errors.New("the entry names another certificate than the signature's")
	}
	return nil
}

// checkTlogEntries checks a bundle's tlogEntries: at most maxTlogEntries,
// each with a canonicalizedBody that, for a keyless bundle (leaf set),
// passes checkRekorBody. The rest of each entry is sigstore-go's to read.
func checkTlogEntries(raw json.RawMessage, leaf []byte, what string) error {
	v, err := parseJSON(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if v.kind() != jsonArray {
		return fmt.Errorf("%s: not a JSON array", what)
	}
	n := 0
	for item := range v.elements() {
		w := fmt.Sprintf("%s[%d]", what, n)
		if n++; n > maxTlogEntries {
			return fmt.Errorf("%s: more than %d entries", what, maxTlogEntries)
		}
		if leaf == nil {
			continue // a key's bundle: sigstore-go never reads its entries
		}
		entry, err := decodeObject(json.RawMessage(item), w, []string{"canonicalizedBody"},
			"logIndex", "logId", "kindVersion", "integratedTime", "inclusionPromise", "inclusionProof")
		if err != nil {
			return err
		}
		body, err := decodeBase64Field(entry["canonicalizedBody"], w+".canonicalizedBody")
		if err != nil {
			return err
		}
		if err := checkRekorBody(body, leaf); err != nil {
			return fmt.Errorf("%s: %w", w, err)
		}
	}
	return nil
}

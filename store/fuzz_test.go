package store

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseBlobInfo: any bytes parse without panic, within the limits,
// and the result survives the stored encoding.
func FuzzParseBlobInfo(f *testing.F) {
	files, _ := filepath.Glob("testdata/mime/*.eml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add(nestedMultipart(60))
	f.Fuzz(func(t *testing.T, msg []byte) {
		bi := parseBlobInfo(msg, Options{MaxHeaderFields: 50, MaxMIMEDepth: 8})
		if bi.HeaderLen < 0 || bi.HeaderLen > int64(len(msg)) || bi.Envelope == nil || bi.BodyStructure == nil {
			t.Fatalf("bad info %+v", bi)
		}
		if _, err := decodeBlobInfo(1, encodeBlobInfo(bi)); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzDecodeRecords: corrupt stored records give errors, never panics
// or huge allocations.
func FuzzDecodeRecords(f *testing.F) {
	body, _ := os.ReadFile("testdata/mime/forward.eml")
	f.Add(encodeBlobInfo(parseBlobInfo(body, Options{})))
	f.Add(encodeMessage(Message{Size: 10, Flags: []string{`\Seen`}, Prefix: []byte("X: y\r\n")}))
	f.Fuzz(func(t *testing.T, rec []byte) {
		decodeBlobInfo(1, rec)
		decodeMessage([]byte{0, 0, 0, 1}, rec)
	})
}

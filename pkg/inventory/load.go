package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// File is one inventory file's name (used in messages and to resolve
// relative add-on paths) and content.
type File struct {
	Name string
	Data []byte
}

// Load reads inventory files and directories (every *.yaml and *.yml in a
// directory, in name order, not recursing), merges them, applies profiles
// and node overrides, and validates the result. The error lists every
// problem found, one per line, as FILE:LINE:COL: FIELD.PATH: message.
func Load(paths ...string) (*Inventory, error) {
	if len(paths) == 0 {
		return nil, errors.New("load inventory: no file or directory given")
	}
	var files []File
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("load inventory: %w", err)
		}
		if !fi.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("load inventory: %w", err)
			}
			files = append(files, File{Name: p, Data: b})
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("load inventory: %w", err)
		}
		var names []string
		for _, e := range entries {
			if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("load inventory: directory %s has no *.yaml files", p)
		}
		sort.Strings(names)
		for _, n := range names {
			fp := filepath.Join(p, n)
			b, err := os.ReadFile(fp)
			if err != nil {
				return nil, fmt.Errorf("load inventory: %w", err)
			}
			files = append(files, File{Name: fp, Data: b})
		}
	}
	return Resolve(files...)
}

// doc is one decoded YAML document with the positions of its fields.
type doc struct {
	file string
	raw  rawDoc
	pos  map[string]Pos
}

// at returns the position of path, or of its nearest ancestor that has one.
func (d *doc) at(path string) Pos {
	for {
		if p, ok := d.pos[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			if p, ok := d.pos[""]; ok {
				return p
			}
			return Pos{File: d.file}
		}
		path = path[:i]
	}
}

var yamlLineRE = regexp.MustCompile(`line (\d+)(?:, column (\d+))?`)

// parseDocs decodes every YAML document of a file.
func parseDocs(f File, errs *errorList) []*doc {
	dec := yaml.NewDecoder(bytes.NewReader(f.Data))
	var docs []*doc
	for {
		var n yaml.Node
		err := decodeNode(dec, &n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p := Pos{File: f.Name}
			msg := strings.TrimPrefix(err.Error(), "yaml: ")
			if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
				p.Line, _ = strconv.Atoi(m[1])
				p.Col, _ = strconv.Atoi(m[2])
				p.Col = max(p.Col, 1)
				msg = strings.TrimSpace(yamlLineRE.ReplaceAllString(msg, ""))
				msg = strings.TrimPrefix(msg, ": ")
			}
			errs.add(p, "", "not valid YAML: "+msg)
			return docs
		}
		if len(n.Content) == 0 {
			continue
		}
		d := &doc{file: f.Name, pos: map[string]Pos{}}
		dc := &decoder{file: f.Name, pos: d.pos, errs: errs}
		root := n.Content[0]
		if root.Kind != yaml.MappingNode {
			dc.errorf(root, "", "an inventory document is a mapping with apiVersion: %s and kind: %s, got %s", APIVersion, Kind, kindName(root))
			continue
		}
		dc.decode(root, reflectValue(&d.raw), "")
		docs = append(docs, d)
	}
	if len(docs) == 0 && len(errs.errs) == 0 {
		errs.add(Pos{File: f.Name}, "", fmt.Sprintf("file has no inventory document: start it with apiVersion: %s and kind: %s", APIVersion, Kind))
	}
	return docs
}

// decodeNode decodes the next document, turning a panic inside the YAML
// parser (seen on some malformed inputs in older versions) into an error so
// that bad input can never crash the provisioner.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

package addons

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// objectDiff is a unified diff between an object as the cluster has it
// (nil: absent) and as the apply makes it, without the bookkeeping the API
// server keeps (managed fields, resource version, UID, timestamps, status)
// and with a Secret's values redacted.
func objectDiff(before, after *unstructured.Unstructured) string {
	ref := ""
	if after != nil {
		ref = Object{Obj: after}.Ref()
	}
	return unifiedDiff(ref, objectYAML(before, nil), objectYAML(after, before))
}

// objectYAML renders o for a diff. For a Secret the values are replaced:
// with [redacted], or [redacted, changed] where other (the version the
// diff compares with) holds a different value under the same key.
func objectYAML(o, other *unstructured.Unstructured) string {
	if o == nil {
		return ""
	}
	o = o.DeepCopy()
	o.SetManagedFields(nil)
	o.SetResourceVersion("")
	o.SetUID("")
	o.SetGeneration(0)
	o.SetCreationTimestamp(metav1.Time{})
	delete(o.Object, "status")
	if o.GetKind() == "Secret" && o.GetAPIVersion() == "v1" {
		redactSecret(o.Object, otherObject(other))
	}
	b, err := yaml.Marshal(o.Object)
	if err != nil {
		return fmt.Sprintf("# cannot render: %v\n", err)
	}
	return string(b)
}

func otherObject(o *unstructured.Unstructured) map[string]any {
	if o == nil {
		return nil
	}
	return o.Object
}

// redactSecret replaces the values of a Secret's data and stringData.
func redactSecret(obj, other map[string]any) {
	for _, field := range []string{"data", "stringData"} {
		m, ok := obj[field].(map[string]any)
		if !ok {
			continue
		}
		om, _ := other[field].(map[string]any)
		for k, v := range m {
			if ov, ok := om[k]; other != nil && (!ok || fmt.Sprint(ov) != fmt.Sprint(v)) {
				m[k] = "[redacted, changed]"
				continue
			}
			m[k] = "[redacted]"
		}
	}
}

// manifestDiff diffs two Helm release manifests object by object (keyed by
// kind, namespace and name), Secrets redacted.
func manifestDiff(oldManifest, newManifest string) string {
	oldDocs, newDocs := manifestObjects(oldManifest), manifestObjects(newManifest)
	keys := map[string]bool{}
	for k := range oldDocs {
		keys[k] = true
	}
	for k := range newDocs {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var b strings.Builder
	for _, k := range sorted {
		o, n := oldDocs[k], newDocs[k]
		b.WriteString(unifiedDiff(k, objectYAML(o, nil), objectYAML(n, o)))
	}
	return b.String()
}

// manifestObjects parses a multi-document manifest into objects keyed by
// "Kind namespace/name".
func manifestObjects(m string) map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	for _, doc := range splitDocuments(m) {
		obj := map[string]any{}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil || len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		out[Object{Obj: u}.Ref()] = u
	}
	return out
}

// splitDocuments splits YAML text at document separator lines.
func splitDocuments(s string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.TrimRight(line, " \r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

// unifiedDiff returns a unified diff (3 lines of context) between a and b
// under the header "--- name" / "+++ name", or "" when they are equal.
func unifiedDiff(name, a, b string) string {
	if a == b {
		return ""
	}
	al, bl := lines(a), lines(b)
	ops := diffLines(al, bl)
	var out strings.Builder
	from, to := "--- "+name, "+++ "+name
	if a == "" {
		from = "--- (absent)"
	}
	if b == "" {
		to = "+++ (removed)"
	}
	fmt.Fprintf(&out, "%s\n%s\n", from, to)
	const context = 3
	// Group the edit script into hunks with context.
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(0, i-context)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			// A run of equal lines longer than twice the context ends the hunk.
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*context {
				end = min(end+context, len(ops))
				break
			}
			end = run
		}
		aStart, bStart, aLen, bLen := ops[start].a, ops[start].b, 0, 0
		for _, op := range ops[start:end] {
			if op.kind != '+' {
				aLen++
			}
			if op.kind != '-' {
				bLen++
			}
		}
		// An empty side is numbered by the line before it, as diff -u does.
		if aLen > 0 {
			aStart++
		}
		if bLen > 0 {
			bStart++
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", aStart, aLen, bStart, bLen)
		for _, op := range ops[start:end] {
			out.WriteByte(op.kind)
			out.WriteString(op.text)
			out.WriteByte('\n')
		}
		i = end
	}
	return out.String()
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// diffOp is one line of an edit script: ' ' kept, '-' removed, '+' added;
// a and b are the line's (or the next line's) index in each input.
type diffOp struct {
	kind byte
	text string
	a, b int
}

// diffLines computes an edit script from a to b by longest common
// subsequence (objects are short: quadratic is fine).
func diffLines(a, b []string) []diffOp {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i], i, j})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, diffOp{'-', a[i], i, j})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j], i, j})
			j++
		}
	}
	return ops
}

package inventory

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Error is one problem in an inventory, at a position and field path.
type Error struct {
	// Pos is where the problem is; Line 0 means the whole file.
	Pos Pos
	// Path is the field path, such as nodes[3].bmc.url.
	Path string
	// Msg says what is wrong and what to do.
	Msg string
}

// Error returns FILE:LINE:COL: FIELD.PATH: message.
func (e *Error) Error() string {
	loc := e.Pos.File
	if e.Pos.Line > 0 {
		loc = e.Pos.String()
	}
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Path, e.Msg)
}

// errorList collects problems so all of them are reported in one pass.
type errorList struct {
	errs     []*Error
	warnings []*Error
}

func (l *errorList) add(p Pos, path, msg string) {
	l.errs = append(l.errs, &Error{Pos: p, Path: path, Msg: msg})
}

func (l *errorList) warn(p Pos, path, msg string) {
	l.warnings = append(l.warnings, &Error{Pos: p, Path: path, Msg: msg})
}

func sortErrors(es []*Error) {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
}

// err returns all problems joined in file and line order, or nil.
func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	sortErrors(l.errs)
	es := make([]error, len(l.errs))
	for i, e := range l.errs {
		es[i] = e
	}
	return errors.Join(es...)
}

func (l *errorList) warningStrings() []string {
	sortErrors(l.warnings)
	out := make([]string, len(l.warnings))
	for i, w := range l.warnings {
		out[i] = w.Error()
	}
	return out
}

// Package fastpath decides, cheaply and without allocating, whether the
// JSON Schema library (github.com/santhosh-tekuri/jsonschema/v6) would
// accept a value. Package schema puts it in front of the library on the
// hot path of every run: the library reads every number through fmt.Sprint
// and math/big and allocates per keyword, while most values are valid.
//
// # What it mirrors
//
// A Checker is built by New from the library's compiled form of a schema
// (*jsonschema.Schema), never from the document. So it sees exactly the
// keywords the library enforces after its own parsing and defaults,
// resolves $ref to the targets the library resolved, and reuses the
// library's compiled patterns and format checkers. It re-implements only
// the yes/no decision; it never explains a failure.
//
// The compiled form is the library's internal model, which changes
// between versions without notice. The checker mirrors MirroredVersion;
// a test fails when go.mod links another one, and another fails when the
// compiled Schema type gains or loses a field. Whoever upgrades the
// library re-checks this contract, the field list and the differential
// tests (with a run of FuzzFastPath), then moves MirroredVersion.
//
// # The contract
//
// Where it must agree with the library:
//
//   - Check returns Valid only for a value the library accepts, and
//     Invalid only for a value the library refuses. Unknown promises
//     nothing. The differential tests (TestFastPathRandom, FuzzFastPath,
//     TestFastSeeds) compare every verdict with the library's.
//   - Values are decoded JSON as package schema hands them over: maps,
//     slices, strings, booleans, nil, and numbers as json.Number, float64
//     or Go integers. A number is typed and compared as the library does:
//     an integral value is an integer whatever its spelling (5.0, 1e2),
//     and bounds and multipleOf are compared exactly, as decimals of at
//     most 19 significant digits. A float64 is read as its shortest
//     decimal form, as the library prints it.
//   - Strings are measured in code points; patterns and formats are the
//     library's own compiled checkers, so they cannot drift.
//   - Object, array and string keywords, enum and const (JSON equality,
//     1 equal to 1.0), and the in-place applicators (allOf, anyOf, oneOf,
//     not, if/then/else, $ref) decide as the 2020-12 specification and
//     the library do.
//
// Where it falls back to the library:
//
//   - New returns nil, and every value goes to the library, when any
//     schema reachable from the root is of another draft or uses a keyword
//     the checker does not implement: unevaluatedProperties,
//     unevaluatedItems, $dynamicRef and $recursiveRef, the pre-2020 items
//     and additionalItems forms, contentEncoding, contentMediaType and
//     contentSchema, or any vocabulary extension. It also returns nil for
//     a bound, multipleOf, enum or const number it cannot hold exactly,
//     and for a $ref cycle that never enters a property or item.
//   - Check returns Unknown for what it cannot decide cheaply or exactly:
//     a value that is not JSON (NaN, a Go type the library does not read),
//     a number beyond 19 significant digits or out of range, uniqueItems
//     over long arrays, and any branch below it that is Unknown.
//   - The caller treats anything but Valid as "ask the library", which
//     alone produces violations and their messages. A panic in Check is a
//     bug, never a verdict: package schema recovers and asks the library.
//
// Any keyword the checker does not list above is one it does not
// implement; such a schema gets no checker, so a new keyword can make the
// path slower, never wrong.
package fastpath

// MirroredVersion is the version of github.com/santhosh-tekuri/jsonschema/v6
// whose compiled form the checker mirrors (see the package comment).
const MirroredVersion = "v6.0.3"

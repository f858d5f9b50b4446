package policy

import (
	"cel.dev/cel-go/checker"
	"cel.dev/cel-go/common/types"

	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// sizeEstimator bounds the sizes of strings, lists and maps for cost
// estimation from the schema at the value's path: maxLength, maxItems and
// maxProperties where declared, otherwise what fits in a document of
// MaxDocumentBytes (every value an expression reads comes from one), the
// way Kubernetes derives bounds from its maximum request size. The
// derived bounds are deliberately loose: a string is at most
// MaxDocumentBytes long and a list or map has at most MaxDocumentBytes/2
// entries (each takes at least a byte and a separator).
type sizeEstimator struct {
	roots      map[string]*schema.Node
	maxString  uint64
	maxEntries uint64
}

func newSizeEstimator(d Decls, maxDocumentBytes int64) *sizeEstimator {
	data := &schema.Node{
		Kind:          schema.Object,
		Properties:    d.Data,
		MaxLength:     schema.Unbounded,
		MaxItems:      schema.Unbounded,
		MaxProperties: int64(len(d.Data)),
	}
	roots := map[string]*schema.Node{varInput: d.Input, varData: data}
	if d.Output != nil {
		roots[varOutput] = d.Output
	}
	return &sizeEstimator{
		roots:      roots,
		maxString:  uint64(maxDocumentBytes),
		maxEntries: uint64(maxDocumentBytes) / 2,
	}
}

// EstimateSize implements checker.CostEstimator.
func (s *sizeEstimator) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	if n, ok := s.resolve(element.Path()); ok {
		return s.nodeSize(n, element.Type())
	}
	// A value without a schema path (a conditional, an index into a
	// computed list...) still comes from a document.
	return s.typeSize(element.Type())
}

// EstimateCallCost implements checker.CostEstimator: the standard
// estimates apply to every function the profile admits.
func (s *sizeEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}

// resolve walks a cost path (a variable, then field names and the markers
// @items, @keys, @values, @indices) through the declared schemas. It
// reports false when the path leaves them.
func (s *sizeEstimator) resolve(path []string) (*schema.Node, bool) {
	if len(path) == 0 {
		return nil, false
	}
	n, ok := s.roots[path[0]]
	if !ok {
		return nil, false
	}
	for _, step := range path[1:] {
		if n == nil || n.Kind == schema.Any {
			return nil, true
		}
		switch step {
		case "@items":
			if n.Kind != schema.Array {
				return nil, false
			}
			n = n.Items
		case "@values":
			if n.Kind != schema.Object {
				return nil, false
			}
			n = n.Additional
		case "@keys":
			return &schema.Node{Kind: schema.String, MaxLength: schema.Unbounded}, true
		case "@indices":
			return &schema.Node{Kind: schema.Integer}, true
		default:
			if n.Kind != schema.Object {
				return nil, false
			}
			if c, ok := n.Properties[step]; ok {
				n = c
			} else {
				n = n.Additional
			}
		}
	}
	return n, true
}

// nodeSize bounds the size of a value of schema n (nil: undeclared).
func (s *sizeEstimator) nodeSize(n *schema.Node, t *types.Type) *checker.SizeEstimate {
	if n == nil || n.Kind == schema.Any {
		return s.typeSize(t)
	}
	switch n.Kind {
	case schema.String:
		return s.bounded(n.MaxLength, s.maxString)
	case schema.Array:
		return s.bounded(n.MaxItems, s.maxEntries)
	case schema.Object:
		return s.bounded(n.MaxProperties, s.maxEntries)
	}
	return nil
}

// typeSize bounds a value known only by its CEL type.
func (s *sizeEstimator) typeSize(t *types.Type) *checker.SizeEstimate {
	if t == nil {
		return nil
	}
	switch t.Kind() {
	case types.StringKind, types.BytesKind:
		return s.bounded(schema.Unbounded, s.maxString)
	case types.ListKind, types.MapKind, types.StructKind:
		return s.bounded(schema.Unbounded, s.maxEntries)
	case types.DynKind, types.AnyKind:
		// Could be a string or a container: the larger bound.
		return s.bounded(schema.Unbounded, s.maxString)
	}
	return nil
}

func (s *sizeEstimator) bounded(declared int64, fallback uint64) *checker.SizeEstimate {
	max := fallback
	if declared >= 0 && uint64(declared) < max {
		max = uint64(declared)
	}
	return &checker.SizeEstimate{Min: 0, Max: max}
}

package tools

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/analysis"
)

// metricsURI is a program's metrics resource: the analyze report of its
// default window.
const metricsURI = "nano-vm://programs/{name}/metrics"

func (h *handlers) analyze(ctx context.Context, c access.Principal, req request) (any, error) {
	if c.Profile != access.ProfileOperator {
		return nil, errorf(CodeForbidden, "analyze is for the operator profile")
	}
	var args AnalyzeArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	rep, err := analysis.Analyze(ctx, h.Store, analysis.Query{
		Program: args.Program, DefinitionHash: args.DefinitionHash, Window: args.Window, Threshold: args.ThresholdBits,
		IncludeLab: args.IncludeLab,
	})
	if errors.Is(err, analysis.ErrUnknownProgram) {
		lab := " outside the fault laboratory (pass include_lab: true to count its runs)"
		if args.IncludeLab {
			lab = ""
		}
		if args.DefinitionHash != "" {
			return nil, errorf(CodeUnknownProgram, "the store holds no runs of program %q under definition %s%s", args.Program, args.DefinitionHash, lab)
		}
		return nil, errorf(CodeUnknownProgram, "the store holds no runs of program %q%s", args.Program, lab)
	}
	if err != nil {
		return nil, err
	}
	return AnalyzeResult{rep}, nil
}

// readMetrics serves the metrics resource: the report of the program's
// last 100 runs under its newest definition, laboratory runs left out.
// Operators only.
func (h *handlers) readMetrics(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	if h.caller(ctx).Profile != access.ProfileOperator {
		return nil, notFound(req.Params.URI)
	}
	name := uriArg(req, "name")
	if name == "" || strings.Contains(name, "/") {
		return nil, notFound(req.Params.URI)
	}
	rep, err := analysis.Analyze(ctx, h.Store, analysis.Query{Program: name})
	if errors.Is(err, analysis.ErrUnknownProgram) {
		return nil, notFound(req.Params.URI)
	}
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(AnalyzeResult{rep})
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(b)}}, nil
}

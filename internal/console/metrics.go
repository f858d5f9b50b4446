package console

// metricsRoutes registers the routes of the metrics page.
func (c *Console) metricsRoutes() {}

namespace KdEngine.Nn;

/// <summary>A module that only groups named children (e.g. student + gate), so they train as one tree.</summary>
public sealed class ModuleGroup : Module
{
    /// <summary>A group of the named children (each name prefixes its child's parameter names).</summary>
    public ModuleGroup(params (string Name, Module Module)[] children)
    {
        foreach (var (name, module) in children) AddModule(name, module);
    }
}

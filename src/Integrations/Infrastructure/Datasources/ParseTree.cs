using System.Globalization;
using System.Text.RegularExpressions;

namespace Integrations.Infrastructure.Datasources;

/// <summary>
/// What a statement's rewritten parse tree refers to, read from PostgreSQL's own dump of it (the text
/// <c>debug_print_rewritten</c> sends, or a <c>pg_node_tree</c> such as a domain's CHECK): every node type and every
/// function, operator, type and relation by OID, views and row-security policies already expanded by the rewriter.
/// The dump is read flat, field by field, never by nesting: an identifier in it (its characters escaped by the
/// server) can add a false reference, which only refuses more, but cannot hide a real one.
/// </summary>
public sealed partial record ParseTree(
    IReadOnlySet<string> NodeTypes,
    IReadOnlySet<uint> Functions,
    IReadOnlySet<uint> Operators,
    IReadOnlySet<uint> Types,
    IReadOnlySet<uint> Relations,
    IReadOnlySet<string> CommandTypes,
    bool HasUtility,
    bool ModifiesOrLocks)
{
    /// <summary>
    /// The node types a read may contain. Deny by default: any other (a row lock, NEXT VALUE FOR, XMLTABLE, TABLESAMPLE,
    /// a write's nodes, and whatever a newer server adds) refuses the template until someone has read what it executes.
    /// </summary>
    public static readonly IReadOnlySet<string> AllowedNodeTypes = new HashSet<string>(StringComparer.Ordinal)
    {
        "QUERY", "RANGETBLENTRY", "RANGETBLFUNCTION", "ALIAS", "FROMEXPR", "JOINEXPR", "RANGETBLREF", "TARGETENTRY",
        "VAR", "CONST", "PARAM", "FUNCEXPR", "NAMEDARGEXPR", "OPEXPR", "DISTINCTEXPR", "NULLIFEXPR", "SCALARARRAYOPEXPR",
        "BOOLEXPR", "SUBLINK", "RELABELTYPE", "COERCEVIAIO", "ARRAYCOERCEEXPR", "CONVERTROWTYPEEXPR", "COLLATEEXPR",
        "CASEEXPR", "CASEWHEN", "CASETESTEXPR", "ARRAYEXPR", "ROWEXPR", "ROWCOMPAREEXPR", "COALESCEEXPR", "MINMAXEXPR",
        "SQLVALUEFUNCTION", "NULLTEST", "BOOLEANTEST", "COERCETODOMAIN", "COERCETODOMAINVALUE", "AGGREF", "GROUPINGFUNC",
        "WINDOWFUNC", "SUBSCRIPTINGREF", "FIELDSELECT", "SORTGROUPCLAUSE", "GROUPINGSET", "WINDOWCLAUSE",
        "COMMONTABLEEXPR", "SETOPERATIONSTMT",
        // PostgreSQL 16 and later: the permissions a query checks, split out of the range table entries.
        "RTEPERMISSIONINFO",
    };

    // Fields that name something the executor calls. Operators run their function (oprcode); opfuncid is read as well.
    private static readonly HashSet<string> FunctionFields = new(StringComparer.Ordinal)
    {
        "funcid", "aggfnoid", "winfnoid", "opfuncid", "hashfuncid", "negfuncid", "startInRangeFunc", "endInRangeFunc",
    };

    private static readonly HashSet<string> OperatorFields = new(StringComparer.Ordinal) { "opno", "opnos", "eqop", "sortop" };

    public static ParseTree Read(string dump)
    {
        var nodeTypes = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match node in Node().Matches(dump)) nodeTypes.Add(node.Groups[1].Value);

        HashSet<uint> functions = [], operators = [], types = [], relations = [];
        var commandTypes = new HashSet<string>(StringComparer.Ordinal);
        var hasUtility = false;
        var modifiesOrLocks = false;
        foreach (Match field in Field().Matches(dump))
        {
            var name = field.Groups[1].Value;
            var value = field.Groups[2].Value;
            if (FunctionFields.Contains(name)) AddOids(functions, value);
            else if (OperatorFields.Contains(name)) AddOids(operators, value);
            else if (name == "relid") AddOids(relations, value);
            else if (name == "commandType") commandTypes.Add(value);
            else if (name == "utilityStmt") hasUtility |= value != "<>";
            else if (name is "hasModifyingCTE" or "hasForUpdate" or "rowMarks" or "returningList" or "onConflict")
            {
                modifiesOrLocks |= value is not ("false" or "<>");
            }
            // Every type a value passes through: its input, output and cast functions may run.
            else if (name.EndsWith("type", StringComparison.OrdinalIgnoreCase) || name.EndsWith("typeid", StringComparison.OrdinalIgnoreCase)
                     || name.EndsWith("types", StringComparison.OrdinalIgnoreCase))
            {
                AddOids(types, value);
            }
        }
        return new ParseTree(nodeTypes, functions, operators, types, relations, commandTypes, hasUtility, modifiesOrLocks);
    }

    /// <summary>The first rule of the tree a read breaks, or null: only SELECTs, no utility statement, no locks, known node types.</summary>
    public string? ShapeRefusal()
    {
        if (HasUtility || CommandTypes.Any(c => c != "1") || ModifiesOrLocks)
        {
            return CommandTypes.Any(c => c is "2" or "3" or "4" or "5") || HasUtility
                ? "The template modifies data (the datasource parses an INSERT, UPDATE, DELETE, MERGE or a utility statement): only reads can run."
                : "The template locks rows or modifies data (FOR UPDATE / FOR SHARE, a data-modifying WITH): only plain reads can run.";
        }
        var unknown = NodeTypes.Where(n => !AllowedNodeTypes.Contains(n)).Order(StringComparer.Ordinal).ToList();
        if (unknown.Count == 0) return null;
        return unknown.Contains("ROWMARKCLAUSE")
            ? "The template locks rows (FOR UPDATE / FOR SHARE): only plain reads can run."
            : $"The template uses {string.Join(", ", unknown)} (in the datasource's parse tree), which the gateway does not allow in a template.";
    }

    private static void AddOids(HashSet<uint> into, string value)
    {
        foreach (Match number in Number().Matches(value))
        {
            if (uint.TryParse(number.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var oid) && oid != 0) into.Add(oid);
        }
    }

    [GeneratedRegex(@"\{([A-Z_]+)")]
    private static partial Regex Node();

    // ":name value" where value is one token, an OID list "(o 1 2 3)", or the "{" / "(" that opens a node or a list;
    // line breaks the server adds are whitespace.
    [GeneratedRegex(@":([A-Za-z_]+)\s+(\(o[\s0-9]*\)|[{(]|[^\s(){}]+)")]
    private static partial Regex Field();

    [GeneratedRegex("[0-9]+")]
    private static partial Regex Number();
}
